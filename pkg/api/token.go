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
	ID      string `json:"id"`
	Name    string `json:"name"`
	Role    string `json:"role"`
	Project string `json:"project,omitempty"`
	// Host is the one host an agent token speaks for: it reads only that
	// host's plan and reports only for it.
	Host string `json:"host,omitempty"`
	// ProjectCreated binds a project token to its project's identity (the
	// creation time), not its name: a project deleted and made again
	// under the same name does not take the old tokens.
	ProjectCreated time.Time `json:"project_created,omitempty"`
	Created        time.Time `json:"created"`
}

// TokenRequest asks for a new token.
type TokenRequest struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Project string `json:"project,omitempty"`
	Host    string `json:"host,omitempty"`
}

// NewToken is returned once, at creation: the only time the secret is shown.
type NewToken struct {
	Token
	Secret string `json:"secret"`
}
