package controller

import (
	"net/http"
	"strconv"
)

// The HTTP API's version (docs/upgrade.md#http-api-version). It is an
// integer, separate from the build version and from the cluster's gossip
// protocol: additive changes (a new endpoint, a new JSON field) keep it,
// and clients ignore JSON fields they do not know; a change that removes
// or renames a field or endpoint, or changes a field's meaning, raises it.
// A client supports a range [min, max] of API versions (the vpcflow CLI:
// APIVersionMin..APIVersion) and refuses a server outside it with an error
// naming both; a server without the header (a vpcflow before API
// versioning) is version 1.
const (
	// APIVersion is the API version this build serves.
	APIVersion = 1
	// APIVersionMin is the oldest API version this build's clients read.
	APIVersionMin = 1
	// APIVersionHeader carries APIVersion in every HTTP response.
	APIVersionHeader = "Vpcflow-API-Version"
)

// withAPIVersion sets the API version header on every response.
func withAPIVersion(h http.Handler) http.Handler {
	v := strconv.Itoa(APIVersion)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(APIVersionHeader, v)
		h.ServeHTTP(w, r)
	})
}
