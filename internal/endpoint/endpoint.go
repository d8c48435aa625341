// Package endpoint turns the URLs of etcd's flags into addresses to
// listen on and dial: http://host:port is TCP, unix://path and unix:path
// a unix socket, where path is what follows the scheme (etcd's tests use
// unix://localhost:2379, a socket file named "localhost:2379" in the
// working directory). The TLS schemes (https, unixs) are refused until
// synod has TLS.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrInvalid is the error of every URL this package refuses.
var ErrInvalid = errors.New("invalid URL")

// unixPrefix marks a unix socket in the string form of an address, so
// that an address stays a plain string (host:port for TCP).
const unixPrefix = "unix:"

// Parse checks a URL to dial and returns its address: host:port for
// http, and "unix:" followed by the socket path for unix.
func Parse(raw string) (string, error) { return parse(raw, false) }

// ParseAny is Parse that also takes port 0, which a listener binds to a
// free port and which etcd accepts in advertised client URLs.
func ParseAny(raw string) (string, error) { return parse(raw, true) }

func parse(raw string, anyPort bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrInvalid, raw, err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w %q: a URL here has only a host and a port (or a socket path), like http://10.0.0.1:2379", ErrInvalid, raw)
	}
	switch u.Scheme {
	case "http":
		if u.Path != "" && u.Path != "/" {
			return "", fmt.Errorf("%w %q: an http URL here has no path, like http://10.0.0.1:2379", ErrInvalid, raw)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" || port == "" {
			return "", fmt.Errorf("%w %q: host and port required, like http://10.0.0.1:2379", ErrInvalid, raw)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && !anyPort) {
			return "", fmt.Errorf("%w %q: port %q is not a number in 1-65535", ErrInvalid, raw, port)
		}
		return net.JoinHostPort(host, port), nil
	case "unix":
		path := u.Host + u.Path
		if u.Opaque != "" {
			path = u.Opaque
		}
		if path == "" {
			return "", fmt.Errorf("%w %q: a unix URL names a socket file, like unix://localhost:2379 or unix:///run/synod.sock", ErrInvalid, raw)
		}
		return unixPrefix + path, nil
	case "https", "unixs":
		return "", fmt.Errorf("%w %q: TLS is not supported yet; use http:// or unix:// on a trusted network", ErrInvalid, raw)
	default:
		return "", fmt.Errorf("%w %q: scheme %q is not supported; use http://host:port or unix://path", ErrInvalid, raw, u.Scheme)
	}
}

// split returns the network and address to pass to package net.
func split(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		return "unix", path
	}
	return "tcp", addr
}

// Socket holds the options of a TCP listening socket (etcd's
// --socket-reuse-port and --socket-reuse-address).
type Socket struct {
	// ReusePort sets SO_REUSEPORT: several processes may listen on the
	// same address (the kernel spreads connections among them).
	ReusePort bool
	// ReuseAddress sets SO_REUSEADDR: the address may be bound again at
	// once while old connections linger in TIME_WAIT.
	ReuseAddress bool
}

// control sets the options on a socket before it binds.
func (o Socket) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if o.ReuseAddress {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}
		if serr == nil && o.ReusePort {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Listen binds a URL, with the socket options o for TCP. A unix socket
// file left by a process that died is removed first, as etcd does; the
// listener removes its file on Close.
func Listen(raw string, o Socket) (net.Listener, error) {
	addr, err := ParseAny(raw)
	if err != nil {
		return nil, err
	}
	network, address := split(addr)
	lc := net.ListenConfig{}
	if network == "unix" {
		if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("listen on %s: removing the old socket file: %w", raw, err)
		}
	} else if o != (Socket{}) {
		lc.Control = o.control
	}
	ln, err := lc.Listen(context.Background(), network, address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", raw, err)
	}
	return ln, nil
}

// Dial connects to an address returned by Parse.
func Dial(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	network, address := split(addr)
	return d.DialContext(ctx, network, address)
}
