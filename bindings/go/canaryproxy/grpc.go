package canaryproxy

import (
	"net/http"
	"strconv"
	"strings"
)

// grpcFailed reports whether an answer whose status is a success is a gRPC call that failed:
// gRPC answers every call 200 and reports its outcome in grpc-status, a response header in a
// trailers-only answer, else a trailer (which the ReverseProxy has put into header, the
// client's, by the time the body was copied: under its own name when the upstream announced
// it, else under http.TrailerPrefix). A server's own failure (grpcServerError) is a failure,
// and so is a gRPC answer whose stream the upstream ended without a status, unless the copy
// was cut on this side (cut, asked only then: the request's context ended first, the client
// went away or a deadline fell; or the client's writer panicked). Only an answer whose
// content-type says gRPC is looked at further.
func grpcFailed(header http.Header, cut func() bool) bool {
	if contentType := header["Content-Type"]; len(contentType) == 0 || !isGRPC(contentType[0]) {
		return false
	}
	status := header["Grpc-Status"]
	if len(status) == 0 {
		status = header[http.TrailerPrefix+"Grpc-Status"]
	}
	if len(status) == 0 {
		return !cut()
	}
	return grpcServerError(status[0])
}

// isGRPC reports whether a content-type is gRPC's: application/grpc alone, with a format
// (application/grpc+proto) or with parameters; not application/grpc-web, framed otherwise.
func isGRPC(contentType string) bool {
	const grpc = "application/grpc"
	if len(contentType) < len(grpc) || !strings.EqualFold(contentType[:len(grpc)], grpc) {
		return false
	}
	rest := contentType[len(grpc):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// grpcServerError reports whether a grpc-status is a server's own failure, as 5xx is for HTTP:
// 2 UNKNOWN, 4 DEADLINE_EXCEEDED, 12 UNIMPLEMENTED, 13 INTERNAL, 14 UNAVAILABLE, 15 DATA_LOSS.
// The others are a success (0 OK) or the caller's error (3 INVALID_ARGUMENT, 5 NOT_FOUND, 16
// UNAUTHENTICATED...). A value that is no code (not a number from 0 to 16) is a failure: gRPC
// clients read it as UNKNOWN or INTERNAL. The nginx module judges gRPC answers the same way.
func grpcServerError(status string) bool {
	code, err := strconv.ParseUint(status, 10, 8)
	if err != nil || code > 16 {
		return true
	}
	return 0xf014>>code&1 == 1 // bits 2, 4, 12, 13, 14 and 15
}
