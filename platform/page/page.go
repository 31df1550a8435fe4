// Package page implements the list pagination every Puchi list RPC shares:
// page_size is clamped to [1, Max] (0 means Default), and page_token is an opaque
// cursor — the sort key of the last item returned — that clients pass back as is.
package page

import (
	"encoding/base64"
	"encoding/json"

	"github.com/puchi-dev/puchi/platform/apperr"
)

// Default and Max page sizes.
const (
	Default = 50
	Max     = 200
)

// Size clamps a requested page size: 0 (unset) → Default, above Max → Max.
func Size(requested int32) int {
	switch {
	case requested <= 0:
		return Default
	case requested > Max:
		return Max
	}
	return int(requested)
}

// Cursor is what a page token carries: the sort key and id of the last item of
// the previous page (keyset pagination, stable under inserts).
type Cursor struct {
	Key string `json:"k,omitempty"`
	ID  string `json:"i,omitempty"`
}

// Encode returns the opaque token for c.
func Encode(c Cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode parses a token from a client. "" is the first page (zero Cursor); a
// token that was not produced by [Encode] is an InvalidArgument on page_token.
func Decode(token string) (Cursor, error) {
	var c Cursor
	if token == "" {
		return c, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || json.Unmarshal(b, &c) != nil || (c.Key == "" && c.ID == "") {
		return Cursor{}, apperr.Invalid("page_token", "PAGE_TOKEN_INVALID", "page_token is not a token this API returned")
	}
	return c, nil
}

// Next returns the token for the page after items when the page is full (there
// may be more), and "" when it is the last page. last gives an item's cursor.
func Next[T any](items []T, size int, last func(T) Cursor) string {
	if len(items) < size || len(items) == 0 {
		return ""
	}
	return Encode(last(items[len(items)-1]))
}
