package v3rpc

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/synod-db/synod/api/v3electionpb"
	"github.com/synod-db/synod/api/v3lockpb"
)

// The lock and election services (etcd's v3lock and v3election) hold
// no state of their own: a lock or a leadership is a key under the
// caller's lease, with the recipes of clientv3's concurrency package run
// on the member's behalf against its own KV, Lease and Watch API. A
// client that loses its lease loses its lock or leadership, as with the
// recipes run client-side; the member keeps nothing alive.

// errMissingLeaderKey refuses a Proclaim or Resign without the leader
// key Campaign returned.
var errMissingLeaderKey = errors.New(`"leader" field must be provided`)

// callerLease makes a concurrency session on the caller's lease. The
// session must not keep the lease alive (the caller does, or lets it
// expire to give up), so it is orphaned at once. A lease of 0 would make
// the session grant a lease of its own; Leader and Observe need no lease
// and pass noLease, an ID that is never granted, to avoid that.
func callerLease(ctx context.Context, cli *clientv3.Client, lease int64) (*concurrency.Session, error) {
	s, err := concurrency.NewSession(cli, concurrency.WithLease(clientv3.LeaseID(lease)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	s.Orphan()
	return s, nil
}

// noLease stands for no lease in a session that only reads.
const noLease = -1

type lockServer struct {
	v3lockpb.UnimplementedLockServer
	cli *clientv3.Client
}

// Lock waits for the mutex name and returns the key that holds it.
func (l *lockServer) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	s, err := callerLease(ctx, l.cli, r.Lease)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(s, string(r.Name))
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return &v3lockpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

// Unlock deletes the key that holds a mutex.
func (l *lockServer) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	resp, err := l.cli.Delete(ctx, string(r.Key))
	if err != nil {
		return nil, err
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}

type electionServer struct {
	v3electionpb.UnimplementedElectionServer
	cli *clientv3.Client
}

// Campaign waits until the caller leads the election.
func (e *electionServer) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	s, err := callerLease(ctx, e.cli, r.Lease)
	if err != nil {
		return nil, err
	}
	el := concurrency.NewElection(s, string(r.Name))
	if err := el.Campaign(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	leader := &v3electionpb.LeaderKey{Name: r.Name, Key: []byte(el.Key()), Rev: el.Rev(), Lease: int64(s.Lease())}
	return &v3electionpb.CampaignResponse{Header: el.Header(), Leader: leader}, nil
}

// resume returns the leadership k names, on k's lease.
func (e *electionServer) resume(ctx context.Context, k *v3electionpb.LeaderKey) (*concurrency.Election, error) {
	if k == nil {
		return nil, errMissingLeaderKey
	}
	s, err := callerLease(ctx, e.cli, k.Lease)
	if err != nil {
		return nil, err
	}
	return concurrency.ResumeElection(s, string(k.Name), string(k.Key), k.Rev), nil
}

// Proclaim sets a new value for a leader that still leads.
func (e *electionServer) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	el, err := e.resume(ctx, r.Leader)
	if err != nil {
		return nil, err
	}
	if err := el.Proclaim(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	return &v3electionpb.ProclaimResponse{Header: el.Header()}, nil
}

// Resign gives a leadership up.
func (e *electionServer) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	el, err := e.resume(ctx, r.Leader)
	if err != nil {
		return nil, err
	}
	if err := el.Resign(ctx); err != nil {
		return nil, err
	}
	return &v3electionpb.ResignResponse{Header: el.Header()}, nil
}

// Leader returns the current leader's key and value.
func (e *electionServer) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	s, err := callerLease(ctx, e.cli, noLease)
	if err != nil {
		return nil, err
	}
	resp, err := concurrency.NewElection(s, string(r.Name)).Leader(ctx)
	if err != nil {
		return nil, err
	}
	return &v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}, nil
}

// Observe streams the leaders' values until the client goes away.
func (e *electionServer) Observe(r *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := stream.Context()
	s, err := callerLease(ctx, e.cli, noLease)
	if err != nil {
		return err
	}
	for resp := range concurrency.NewElection(s, string(r.Name)).Observe(ctx) {
		if err := stream.Send(&v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}); err != nil {
			return err
		}
	}
	return ctx.Err()
}
