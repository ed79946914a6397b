package api

import "regexp"

// MaxNameLen keeps names usable inside Linux device and namespace names
// once prefixed, and in DNS labels.
const MaxNameLen = 63

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateName checks a resource name: DNS-label shaped, 1..63 chars.
func ValidateName(field, name string) *FieldError {
	switch {
	case name == "":
		return Fieldf(field, "must not be empty")
	case len(name) > MaxNameLen:
		return Fieldf(field, "is %d characters long, at most %d allowed", len(name), MaxNameLen)
	case !nameRE.MatchString(name):
		return Fieldf(field, "%q must be lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}
