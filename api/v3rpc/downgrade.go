package v3rpc

import (
	"context"
	"strconv"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/server"
)

// errCannotDowngrade answers a downgrade to the one release etcd would
// accept (the previous minor one): synod's data is not etcd's, so its
// members cannot be downgraded in place.
var errCannotDowngrade = status.Error(codes.FailedPrecondition,
	"etcdserver: synod cannot downgrade its members to an older release in place; replace them by members of that release, one at a time")

// errUnknownDowngradeAction answers an action etcd does not define, in
// its words (it sends them as Unknown).
var errUnknownDowngradeAction = status.Error(codes.Unknown, "etcdserver: unknown method")

// Downgrade answers etcd's downgrade requests. There is nothing to
// downgrade to, so every target is refused, with etcd's errors for what
// etcd refuses too: a malformed version, a target that is not the
// previous minor release, a cancel with no downgrade in progress.
func (m *maintenanceServer) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	switch r.Action {
	case pb.DowngradeRequest_CANCEL:
		return nil, rpctypes.ErrGRPCNoInflightDowngrade
	case pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE:
	default:
		return nil, errUnknownDowngradeAction
	}
	major, minor, ok := parseMinorVersion(r.Version)
	if !ok {
		return nil, rpctypes.ErrGRPCWrongDowngradeVersionFormat
	}
	curMajor, curMinor, _ := parseMinorVersion(server.ClusterVersion)
	if major != curMajor || minor != curMinor-1 {
		return nil, rpctypes.ErrGRPCInvalidDowngradeTargetVersion
	}
	return nil, errCannotDowngrade
}

// parseMinorVersion reads the major and minor numbers of a version
// written major.minor or major.minor.patch (with an optional
// -prerelease or +build suffix), as etcd accepts a downgrade target.
func parseMinorVersion(v string) (major, minor int, ok bool) {
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 2 && len(parts) != 3 {
		return 0, 0, false
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return 0, 0, false
		}
		nums[i] = n
	}
	return nums[0], nums[1], true
}
