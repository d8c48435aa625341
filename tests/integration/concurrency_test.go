package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// These tests run etcd's own recipes (go.etcd.io/etcd/client/v3/concurrency)
// against synod: sessions rest on leases, locks and elections on leases,
// revisions and watches, STM on transactions.

// retryLeaderChanged runs a write again when it failed with "leader
// changed": such a write was never applied (the new leader's log does not
// hold it), so repeating it cannot apply it twice. Elections happen on a
// loaded test machine with the tests' 100ms election timeout.
func retryLeaderChanged(write func() error) error {
	for {
		err := write()
		if !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaderChanged) {
			return err
		}
	}
}

// TestConcurrencySession: a session's lease lives while the session
// does, dies with Close, and the session ends when its lease is revoked
// behind its back.
func TestConcurrencySession(t *testing.T) {
	t.Parallel()
	clock := framework.NewClock()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) { cfg.Lease.Now = clock.Now })
	ctx := framework.Context(t)
	cli := c.Client()
	const ttl = 5
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "sess/k", "v", clientv3.WithLease(s.Lease())); err != nil {
		t.Fatal(err)
	}
	// Move the lease's clock past its TTL in two steps, each shorter than
	// the TTL and each followed by the session's next renewal (the TTL
	// reads whole again): the session keeps its lease alive.
	for range 2 {
		clock.Advance(3 * time.Second)
		framework.WaitFor(t, "the session to renew its lease", func() bool {
			tl, err := cli.TimeToLive(ctx, s.Lease())
			return err == nil && tl.TTL == ttl
		})
	}
	select {
	case <-s.Done():
		t.Fatal("session ended while kept alive")
	default:
	}
	if n := countPrefix(t, cli, "sess/"); n != 1 {
		t.Fatal("the session's key vanished")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, cli, "sess/"); n != 0 {
		t.Fatal("the session's key outlived Close")
	}

	s2, err := concurrency.NewSession(c.Client(1), concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := cli.Revoke(ctx, s2.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session still alive after its lease was revoked")
	}
}

// TestConcurrencyMutex has clients on every member contend for one lock:
// never two holders at once, and no increment of a counter guarded by
// the lock is lost.
func TestConcurrencyMutex(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	const workers, rounds = 6, 8
	var holders atomic.Int32
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		cli := c.Client(w % 3)
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := concurrency.NewMutex(s, "/lock/counter")
			for range rounds {
				if err := m.Lock(ctx); err != nil {
					errc <- fmt.Errorf("worker %d lock: %w", w, err)
					return
				}
				if n := holders.Add(1); n != 1 {
					errc <- fmt.Errorf("%d holders of the lock", n)
				}
				// Read-modify-write without a transaction: only the lock
				// keeps it safe.
				resp, err := cli.Get(ctx, "counter")
				if err != nil {
					errc <- err
					return
				}
				v := 0
				if len(resp.Kvs) == 1 {
					v, _ = strconv.Atoi(string(resp.Kvs[0].Value))
				}
				// Another round trip between the read and the write
				// widens the window in which an unlocked increment
				// would be lost.
				if _, err := cli.Get(ctx, "counter"); err != nil {
					errc <- err
					return
				}
				if err := retryLeaderChanged(func() error {
					_, err := cli.Put(ctx, "counter", strconv.Itoa(v+1))
					return err
				}); err != nil {
					errc <- err
					return
				}
				holders.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					errc <- fmt.Errorf("worker %d unlock: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	resp, err := c.Client().Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Kvs[0].Value); got != strconv.Itoa(workers*rounds) {
		t.Fatalf("counter %s, want %d: an update was lost", got, workers*rounds)
	}

	// TryLock fails while another session holds the lock, and succeeds
	// once the holder's session (and lease) is gone.
	s1, err := concurrency.NewSession(c.Client(0), concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := concurrency.NewSession(c.Client(1), concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m1, m2 := concurrency.NewMutex(s1, "/lock/try"), concurrency.NewMutex(s2, "/lock/try")
	if err := m1.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("second TryLock: %v, want ErrLocked", err)
	}
	// The holder dies without unlocking: its lease's revocation frees
	// the lock for the waiter.
	got := make(chan error, 1)
	go func() { got <- m2.Lock(ctx) }()
	framework.WaitFor(t, "the second session to queue for the lock", func() bool {
		return countPrefix(t, c.Client(), "/lock/try") == 2
	})
	s1.Orphan()
	if _, err := c.Client().Revoke(ctx, s1.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not get the lock after the holder's lease was revoked")
	}
	if err := m2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrencyElection runs an election: one leader at a time,
// observers see each leader in turn, resigning hands over.
func TestConcurrencyElection(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	const n = 3
	sessions := make([]*concurrency.Session, n)
	elections := make([]*concurrency.Election, n)
	for i := range n {
		s, err := concurrency.NewSession(c.Client(i), concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sessions[i] = s
		elections[i] = concurrency.NewElection(s, "/election/e")
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	observed := concurrency.NewElection(sessions[0], "/election/e").Observe(octx)

	if err := elections[0].Campaign(ctx, "v0"); err != nil {
		t.Fatal(err)
	}
	// The others wait in line.
	won := make(chan int, n)
	for i := 1; i < n; i++ {
		go func() {
			if err := elections[i].Campaign(ctx, fmt.Sprintf("v%d", i)); err == nil {
				won <- i
			}
		}()
	}
	expectLeader := func(want string) {
		t.Helper()
		framework.WaitFor(t, "leader "+want, func() bool {
			resp, err := elections[0].Leader(ctx)
			return err == nil && string(resp.Kvs[0].Value) == want
		})
		for {
			select {
			case resp, ok := <-observed:
				if !ok {
					t.Fatal("observe channel closed")
				}
				if string(resp.Kvs[0].Value) == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("observer never saw %s", want)
			}
		}
	}
	expectLeader("v0")
	select {
	case i := <-won:
		t.Fatalf("candidate %d won while v0 leads", i)
	case <-time.After(300 * time.Millisecond):
	}
	if err := elections[0].Proclaim(ctx, "v0-again"); err != nil {
		t.Fatal(err)
	}
	expectLeader("v0-again")
	if err := elections[0].Resign(ctx); err != nil {
		t.Fatal(err)
	}
	next := <-won
	expectLeader(fmt.Sprintf("v%d", next))
	// The leader's session dies: its lease expires or is revoked, and
	// the last candidate takes over.
	sessions[next].Orphan()
	if _, err := c.Client().Revoke(ctx, sessions[next].Lease()); err != nil {
		t.Fatal(err)
	}
	last := <-won
	if last == next {
		t.Fatal("the same candidate won twice")
	}
	expectLeader(fmt.Sprintf("v%d", last))
	if err := elections[last].Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := elections[0].Leader(ctx); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Fatalf("leader after every candidate left: %v", err)
	}
}

// TestConcurrencySTM transfers money between accounts from many clients
// with software transactional memory: the total never changes.
func TestConcurrencySTM(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	const accounts, initial = 8, 100
	cli := c.Client()
	for i := range accounts {
		if _, err := cli.Put(ctx, fmt.Sprintf("acct/%d", i), strconv.Itoa(initial)); err != nil {
			t.Fatal(err)
		}
	}
	for _, iso := range []struct {
		name string
		lvl  concurrency.Isolation
	}{
		{"SerializableSnapshot", concurrency.SerializableSnapshot},
		{"Serializable", concurrency.Serializable},
		{"RepeatableReads", concurrency.RepeatableReads},
	} {
		t.Run(iso.name, func(t *testing.T) {
			var wg sync.WaitGroup
			errc := make(chan error, 6)
			for w := range 6 {
				wcli := c.Client(w % 3)
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					for range 15 {
						from, to := rng.IntN(accounts), rng.IntN(accounts)
						if from == to {
							continue
						}
						err := retryLeaderChanged(func() error {
							_, err := concurrency.NewSTM(wcli, func(s concurrency.STM) error {
								fk, tk := fmt.Sprintf("acct/%d", from), fmt.Sprintf("acct/%d", to)
								fv, _ := strconv.Atoi(s.Get(fk))
								tv, _ := strconv.Atoi(s.Get(tk))
								amount := min(fv, 1+rng.IntN(20))
								s.Put(fk, strconv.Itoa(fv-amount))
								s.Put(tk, strconv.Itoa(tv+amount))
								return nil
							}, concurrency.WithIsolation(iso.lvl), concurrency.WithAbortContext(ctx))
							return err
						})
						if err != nil {
							errc <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			resp, err := cli.Get(ctx, "acct/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			sum := 0
			for _, kv := range resp.Kvs {
				v, err := strconv.Atoi(string(kv.Value))
				if err != nil || v < 0 {
					t.Fatalf("account %s = %q", kv.Key, kv.Value)
				}
				sum += v
			}
			if sum != accounts*initial {
				t.Fatalf("total %d, want %d", sum, accounts*initial)
			}
		})
	}
}
