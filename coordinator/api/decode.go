package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/strata-infra/strata/pkg/api"
)

// decodeStrict reads a JSON body into v, refusing unknown fields, wrong
// types, trailing data and oversized bodies; errors name the field, with
// prefix (e.g. "spec") in front.
func decodeStrict(r *http.Request, v any, prefix string) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return &api.Error{Code: http.StatusBadRequest, Message: "read body: " + err.Error()}
	}
	if len(body) > MaxBodyBytes {
		return &api.Error{Code: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}
	}
	return decodeBytes(body, v, prefix)
}

func decodeBytes(body []byte, v any, prefix string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return api.Fieldf(join(prefix, ""), "a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFieldError(err, prefix)
	}
	if dec.More() {
		return api.Fieldf(join(prefix, ""), "unexpected data after the JSON object")
	}
	return nil
}

func join(prefix, field string) string {
	switch {
	case prefix == "":
		if field == "" {
			return "body"
		}
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// jsonFieldError turns encoding/json's errors into field errors.
func jsonFieldError(err error, prefix string) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return api.Fieldf(join(prefix, te.Field), "must be %s, not a JSON %s", jsonType(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return api.Fieldf(join(prefix, ""), "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return api.Fieldf(join(prefix, ""), "malformed JSON: unexpected end of input")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return api.Fieldf(join(prefix, strings.Trim(f, `"`)), "unknown field")
	}
	return api.Fieldf(join(prefix, ""), "%s", msg)
}

func jsonType(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	}
	return goKind
}
