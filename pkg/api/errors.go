package api

import "fmt"

// Error is the body of every non-2xx answer.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Field names the offending input, as a JSON path (e.g. "spec.description").
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%d: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%d: %s", e.Code, e.Message)
}

// ErrorBody wraps Error on the wire: {"error": {...}}.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// FieldError is a validation failure about one named field.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Fieldf builds a FieldError.
func Fieldf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}
