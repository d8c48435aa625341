package v3rpc

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// slowUnary logs a unary request that took longer than limit, in etcd's
// words ("request stats"), so that operators and etcd's tests find it.
// It logs sizes, never contents: keys and values may be secrets.
func slowUnary(lg *slog.Logger, limit time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		if took := time.Since(start); took > limit && lg != nil {
			remote := ""
			if p, ok := peer.FromContext(ctx); ok {
				remote = p.Addr.String()
			}
			lg.Warn("request stats",
				"method", info.FullMethod,
				"start time", start.UTC().Format(time.RFC3339Nano),
				"time spent", took.String(),
				"expected-duration", limit.String(),
				"remote", remote,
				"request size", messageSize(req),
				"response size", messageSize(resp),
				"code", status.Code(err).String())
		}
		return resp, err
	}
}

func messageSize(m any) int {
	if pm, ok := m.(proto.Message); ok {
		return proto.Size(pm)
	}
	return 0
}
