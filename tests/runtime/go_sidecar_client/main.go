// A stand-in for the asya Go sidecar's runtime client and router, written from
// their documented behaviour (docs/protocol.md, "Running under the asya Go
// sidecar"), so the runtime's replies are decoded by Go's encoding/json with
// the same types and rules the real sidecar applies:
//
//   - the reply body must decode as a JSON array of responses;
//   - a response with "error" set goes to error-end;
//   - otherwise it goes to actors[route.current], or to happy-end past the end.
//
// Usage: go_sidecar_client SOCKET_PATH < request-body.json
// Prints one line per response: "<destination> <payload JSON>", or
// "decode-error: ..." and exit status 2 when the reply is not that array.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
)

type route struct {
	Actors  []string `json:"actors"`
	Current int      `json:"current"`
}

type errorDetails struct {
	Message   string `json:"message,omitempty"`
	Type      string `json:"type,omitempty"`
	Traceback string `json:"traceback,omitempty"`
}

type response struct {
	Payload json.RawMessage `json:"payload,omitempty"`
	Route   route           `json:"route,omitempty"`
	Error   string          `json:"error,omitempty"`
	Details errorDetails    `json:"details,omitempty"`
}

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(1, "read request: %v", err)
	}
	conn, err := net.Dial("unix", os.Args[1])
	if err != nil {
		fail(1, "dial: %v", err)
	}
	defer conn.Close()

	header := make([]byte, 4)
	binary.BigEndian.PutUint32(header, uint32(len(body)))
	if _, err := conn.Write(append(header, body...)); err != nil {
		fail(1, "send: %v", err)
	}
	if _, err := io.ReadFull(conn, header); err != nil {
		fail(1, "read length: %v", err)
	}
	reply := make([]byte, binary.BigEndian.Uint32(header))
	if _, err := io.ReadFull(conn, reply); err != nil {
		fail(1, "read body: %v", err)
	}

	var responses []response
	if err := json.Unmarshal(reply, &responses); err != nil {
		fail(2, "decode-error: %v", err)
	}
	if len(responses) == 0 {
		fmt.Println("happy-end (empty reply: the input goes on as it is)")
	}
	for _, r := range responses {
		switch {
		case r.Error != "":
			fmt.Printf("error-end %s %s: %s\n", r.Error, r.Details.Type, r.Details.Message)
		case r.Route.Current < len(r.Route.Actors):
			fmt.Printf("%s %s\n", r.Route.Actors[r.Route.Current], r.Payload)
		default:
			fmt.Printf("happy-end %s\n", r.Payload)
		}
	}
}

func fail(status int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(status)
}
