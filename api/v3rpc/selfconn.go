package v3rpc

import (
	"context"
	"math"
	"net"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// selfConn is an in-process gRPC connection from a member's client API
// to its own gRPC server. The JSON gateway and the lock and election
// services are clients of the member: through it, their calls pass the
// same interceptors as any client's (validation, learner and leader
// checks, errors, metrics), without a socket or a port.
type selfConn struct {
	ln   *bufconn.Listener
	conn *grpc.ClientConn
	cli  *clientv3.Client // the KV, Lease and Watch API over conn
}

// selfConnBuffer is the connection's buffer in each direction.
const selfConnBuffer = 1 << 20

// newSelfConn opens the connection. It connects when first used; the
// gRPC server must then serve listener(). maxRequest is the member's
// request size limit.
func newSelfConn(maxRequest int) (*selfConn, error) {
	ln := bufconn.Listen(selfConnBuffer)
	conn, err := grpc.NewClient("passthrough:///synod-self",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(maxRequest+512<<10)),
	)
	if err != nil {
		ln.Close()
		return nil, err
	}
	cli := clientv3.NewCtxClient(context.Background())
	cli.KV = clientv3.NewKVFromKVClient(pb.NewKVClient(conn), cli)
	cli.Lease = clientv3.NewLeaseFromLeaseClient(pb.NewLeaseClient(conn), cli, 5*time.Second)
	cli.Watcher = clientv3.NewWatchFromWatchClient(pb.NewWatchClient(conn), cli)
	return &selfConn{ln: ln, conn: conn, cli: cli}, nil
}

// listener is where the gRPC server must serve the connection.
func (c *selfConn) listener() net.Listener { return c.ln }

// close ends the client and the connection (the gRPC server's Stop
// closes the listener).
func (c *selfConn) close() {
	c.cli.Close()
	c.conn.Close()
}
