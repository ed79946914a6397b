package api

import "time"

// Token roles.
const (
	RoleAdmin   = "admin"
	RoleAgent   = "agent"
	RoleProject = "project"
)

// Token describes a bearer token; the secret itself is never stored.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Project string    `json:"project,omitempty"`
	Created time.Time `json:"created"`
}

// TokenRequest asks for a new token.
type TokenRequest struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Project string `json:"project,omitempty"`
}

// NewToken is returned once, at creation: the only time the secret is shown.
type NewToken struct {
	Token
	Secret string `json:"secret"`
}
