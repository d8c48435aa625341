package v3rpc

import (
	"context"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/api/v3electionpb"
	"github.com/synod-db/synod/api/v3lockpb"
)

// gateway serves the v3 API as JSON over HTTP, on the paths of etcd's
// gRPC gateway (/v3/kv/put, /v3/watch, ...), for the clients that speak
// only HTTP (Patroni, Python and shell scripts, curl). The mapping is
// grpc-gateway's: for etcd's services the one generated from etcd's API
// definitions (etcd's api module ships it), for lock and election
// routes of the same shape (lockRoutes, electionRoutes). Requests reach
// the member's own gRPC server over its in-process connection
// (selfConn), so they pass the same interceptors as gRPC ones.
type gateway struct {
	mux *runtime.ServeMux
}

// gatewayPrefixes are the path prefixes the gateway answers: /v3/ and the
// older /v3beta/ and /v3alpha/ that etcd still serves for old clients.
var gatewayPrefixes = []string{"/v3/", "/v3beta/", "/v3alpha/"}

// newGateway serves the gateway's calls on conn.
func newGateway(conn *grpc.ClientConn) (*gateway, error) {
	// etcd's JSON: proto field names (snake_case), unset fields left
	// out, unknown fields in requests ignored.
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler, gw.RegisterWatchHandler, gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler, gw.RegisterMaintenanceHandler, gw.RegisterAuthHandler,
	} {
		// The context only serves the registration's own dialing,
		// which a given connection does not do.
		if err := register(context.Background(), mux, conn); err != nil {
			return nil, err
		}
	}
	g := &gateway{mux: mux}
	if err := g.lockRoutes(v3lockpb.NewLockClient(conn)); err != nil {
		return nil, err
	}
	if err := g.electionRoutes(v3electionpb.NewElectionClient(conn)); err != nil {
		return nil, err
	}
	return g, nil
}

// ServeHTTP answers a gateway request, under any of its prefixes.
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, p := range gatewayPrefixes[1:] {
		if rest, ok := strings.CutPrefix(r.URL.Path, p); ok {
			r.URL.Path = "/v3/" + rest
			r.URL.RawPath = ""
		}
	}
	g.mux.ServeHTTP(w, r)
}

func (g *gateway) lockRoutes(c v3lockpb.LockClient) error {
	return firstErr(
		unaryRoute(g.mux, "/v3/lock/lock", "/v3lockpb.Lock/Lock", c.Lock),
		unaryRoute(g.mux, "/v3/lock/unlock", "/v3lockpb.Lock/Unlock", c.Unlock),
	)
}

func (g *gateway) electionRoutes(c v3electionpb.ElectionClient) error {
	return firstErr(
		unaryRoute(g.mux, "/v3/election/campaign", "/v3electionpb.Election/Campaign", c.Campaign),
		unaryRoute(g.mux, "/v3/election/proclaim", "/v3electionpb.Election/Proclaim", c.Proclaim),
		unaryRoute(g.mux, "/v3/election/leader", "/v3electionpb.Election/Leader", c.Leader),
		unaryRoute(g.mux, "/v3/election/resign", "/v3electionpb.Election/Resign", c.Resign),
		streamRoute(g.mux, "/v3/election/observe", "/v3electionpb.Election/Observe", c.Observe),
	)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// request decodes the JSON body of r into a new Req and prepares the
// call's context (the request's headers as gRPC metadata), answering the
// error itself if it cannot; ok reports whether to go on.
func request[Req any, PReq interface {
	*Req
	proto.Message
}](mux *runtime.ServeMux, w http.ResponseWriter, r *http.Request, path, method string) (ctx context.Context, req PReq, out runtime.Marshaler, ok bool) {
	in, out := runtime.MarshalerForRequest(mux, r)
	req = PReq(new(Req))
	if err := in.NewDecoder(r.Body).Decode(req); err != nil {
		runtime.HTTPError(r.Context(), mux, out, w, r, status.Error(codes.InvalidArgument, err.Error()))
		return nil, nil, out, false
	}
	ctx, err := runtime.AnnotateContext(r.Context(), mux, r, method, runtime.WithHTTPPathPattern(path))
	if err != nil {
		runtime.HTTPError(r.Context(), mux, out, w, r, err)
		return nil, nil, out, false
	}
	return ctx, req, out, true
}

// unaryRoute serves POST path by calling a unary method with the decoded
// body, as grpc-gateway's generated handlers do.
func unaryRoute[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](mux *runtime.ServeMux, path, method string, call func(context.Context, PReq, ...grpc.CallOption) (Resp, error)) error {
	return mux.HandlePath(http.MethodPost, path, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		ctx, req, out, ok := request[Req, PReq](mux, w, r, path, method)
		if !ok {
			return
		}
		var md runtime.ServerMetadata
		resp, err := call(ctx, req, grpc.Header(&md.HeaderMD), grpc.Trailer(&md.TrailerMD))
		ctx = runtime.NewServerMetadataContext(ctx, md)
		if err != nil {
			runtime.HTTPError(ctx, mux, out, w, r, err)
			return
		}
		runtime.ForwardResponseMessage(ctx, mux, out, w, r, resp)
	})
}

// streamRoute serves POST path by calling a server-streaming method and
// writing each message as a line of JSON, as for Watch.
func streamRoute[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message, Stream interface {
	Recv() (Resp, error)
	Header() (metadata.MD, error)
}](mux *runtime.ServeMux, path, method string, call func(context.Context, PReq, ...grpc.CallOption) (Stream, error)) error {
	return mux.HandlePath(http.MethodPost, path, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		ctx, req, out, ok := request[Req, PReq](mux, w, r, path, method)
		if !ok {
			return
		}
		stream, err := call(ctx, req)
		if err != nil {
			runtime.HTTPError(ctx, mux, out, w, r, err)
			return
		}
		header, err := stream.Header()
		if err != nil {
			runtime.HTTPError(ctx, mux, out, w, r, err)
			return
		}
		ctx = runtime.NewServerMetadataContext(ctx, runtime.ServerMetadata{HeaderMD: header})
		runtime.ForwardResponseStream(ctx, mux, out, w, r, func() (proto.Message, error) { return stream.Recv() })
	})
}
