package chaos

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/raft/raftpb"
)

// handshake builds a peer protocol handshake from one member ID to another.
func handshake(from, to uint64) []byte {
	b := make([]byte, handshakeLen)
	copy(b, handshakeMagic)
	b[8], b[9] = 1, kindStream
	binary.BigEndian.PutUint64(b[18:], from)
	binary.BigEndian.PutUint64(b[26:], to)
	return b
}

// frame builds a message frame carrying m (the CRC is not checked here).
func frame(m raftpb.Message) []byte {
	payload := raftpb.MarshalMessage(&m)
	f := make([]byte, frameHeaderLen+len(payload))
	f[0] = frameMessage
	binary.BigEndian.PutUint32(f[1:5], uint32(len(payload)))
	copy(f[frameHeaderLen:], payload)
	return f
}

// sink accepts one connection and hands over everything it receives.
func sink(t *testing.T) (addr string, got <-chan []byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []byte, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c)
		ch <- b
	}()
	return ln.Addr().String(), ch
}

// TestProxyFrames sends frames through a proxy under a rule and checks
// what arrives: the handshake, then the messages dropped, duplicated or
// forwarded as the rule says (proposals are never duplicated unless
// asked).
func TestProxyFrames(t *testing.T) {
	app := frame(raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3})
	prop := frame(raftpb.Message{Type: raftpb.MsgProp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: []byte("x")}}})
	for _, tc := range []struct {
		name string
		rule LinkRule
		want [][]byte
	}{
		{"forward", LinkRule{}, [][]byte{app, prop}},
		{"drop", LinkRule{Drop: 1}, nil},
		{"duplicate", LinkRule{Duplicate: 1}, [][]byte{app, app, prop}},
		{"duplicate proposals", LinkRule{Duplicate: 1, DuplicateProposals: true}, [][]byte{app, app, prop, prop}},
		{"delay", LinkRule{Delay: 50 * time.Millisecond}, [][]byte{app, prop}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNetwork(1, nil)
			defer n.Close()
			target, got := sink(t)
			p, err := n.AddProxy("b", target)
			if err != nil {
				t.Fatal(err)
			}
			n.Register(1, "a")
			n.SetRule("a", "b", tc.rule)
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.Write(append(append(handshake(1, 2), app...), prop...))
			time.Sleep(200 * time.Millisecond)
			c.Close()
			b := <-got
			want := append(handshake(1, 2), bytes.Join(tc.want, nil)...)
			if !bytes.Equal(b, want) {
				t.Fatalf("received %d bytes, want %d", len(b), len(want))
			}
			if tc.rule.Delay > 0 && time.Since(start) < tc.rule.Delay {
				t.Fatal("not delayed")
			}
		})
	}
}

// TestProxyBlackhole checks that a blackholed link answers no handshake
// and that healing closes the held connection.
func TestProxyBlackhole(t *testing.T) {
	n := NewNetwork(1, nil)
	defer n.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reached := make(chan struct{})
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			close(reached)
		}
	}()
	p, err := n.AddProxy("b", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n.Register(1, "a")
	n.Isolate("b")
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(handshake(1, 2))
	time.Sleep(100 * time.Millisecond)
	n.Heal()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("held connection not closed on heal: %v", err)
	}
	select {
	case <-reached:
		t.Fatal("a blackholed connection reached the member")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestDuplicatedProposal is the regression test of a bug this harness
// found: a MsgProp that reached the leader twice (a follower forwards a
// client's write, the network duplicates the message) was appended and
// applied twice, so one Put took two revisions. synod's TCP transport
// never duplicates a message, so this needs a duplicating network; a
// member now drops forwarded proposals whose request it has seen.
func TestDuplicatedProposal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := StartInProcess(t, ctx, dir, 3, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lead := c.Leader()
	follower := (lead + 1) % 3
	c.Net.SetRule(c.Members[follower].Name, c.Members[lead].Name, LinkRule{Duplicate: 1, DuplicateProposals: true})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Members[follower].ClientAddr}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Put(ctx, "once", "v")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	get, err := cli.Get(ctx, "once")
	if err != nil {
		t.Fatal(err)
	}
	if get.Header.Revision != resp.Header.Revision || get.Kvs[0].Version != 1 {
		t.Fatalf("one Put through follower %s: acknowledged at revision %d, but the store is at revision %d and the key at version %d (mod %d): the proposal was applied %d times",
			c.Members[follower].Name, resp.Header.Revision, get.Header.Revision, get.Kvs[0].Version, get.Kvs[0].ModRevision, get.Kvs[0].Version)
	}
}
