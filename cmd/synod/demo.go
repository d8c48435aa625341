package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// demoMember is one member of the demo: a raft.Node, its storage, and an
// inbox the others send to.
type demoMember struct {
	id      uint64
	node    raft.Node
	storage *raft.MemoryStorage
	inbox   chan pb.Message
}

// event is something a member reports to the printer.
type event struct {
	id   uint64
	text string
}

// runDemo starts n members, waits for a leader, proposes entries one by one
// and returns once every member applied all of them.
func runDemo(ctx context.Context, out io.Writer, n, entries int, tick time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	peers := make([]raft.Peer, n)
	for i := range peers {
		peers[i] = raft.Peer{ID: uint64(i + 1)}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	members := make(map[uint64]*demoMember, n)
	for _, p := range peers {
		st := raft.NewMemoryStorage()
		node, err := raft.StartNode(&raft.Config{
			ID: p.ID, ElectionTick: 10, HeartbeatTick: 1, Storage: st,
			PreVote: true, CheckQuorum: true, Logger: quiet,
		}, peers)
		if err != nil {
			return fmt.Errorf("starting member %d: %w", p.ID, err)
		}
		members[p.ID] = &demoMember{id: p.ID, node: node, storage: st, inbox: make(chan pb.Message, 1024)}
	}

	events := make(chan event, 1024)
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.run(ctx, members, tick, events)
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, m := range members {
			m.node.Stop()
		}
	}()

	fmt.Fprintf(out, "synod raft demo: %d members, committing %d entries\n", n, entries)
	applied := map[uint64]int{}
	proposed := 0
	leader := uint64(0)
	proposeTicker := time.NewTicker(5 * tick)
	defer proposeTicker.Stop()
	for {
		done := true
		for _, m := range members {
			if applied[m.id] < entries {
				done = false
			}
		}
		if done {
			fmt.Fprintf(out, "all %d members applied %d entries; done\n", n, entries)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo did not finish: %w", ctx.Err())
		case ev := <-events:
			fmt.Fprintf(out, "member %d: %s\n", ev.id, ev.text)
			if len(ev.text) > 7 && ev.text[:7] == "applied" {
				applied[ev.id]++
			}
			if len(ev.text) > 14 && ev.text[:14] == "became leader " {
				leader = ev.id
			}
		case <-proposeTicker.C:
			if leader == 0 || proposed >= entries {
				continue
			}
			data := fmt.Sprintf("entry-%d", proposed+1)
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			err := members[leader].node.Propose(pctx, []byte(data))
			pcancel()
			if err == nil {
				proposed++
				fmt.Fprintf(out, "client: proposed %q to member %d\n", data, leader)
			}
		}
	}
}

// run is the member's loop: tick, deliver inbound messages, and handle
// Readys as the raft.Ready contract says.
func (m *demoMember) run(ctx context.Context, members map[uint64]*demoMember, tick time.Duration, events chan<- event) {
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	send := func(msgs []pb.Message) {
		for _, msg := range msgs {
			if to := members[msg.To]; to != nil {
				select {
				case to.inbox <- msg:
				default: // a full inbox drops the message, as a network may
				}
			}
		}
	}
	report := func(text string) {
		select {
		case events <- event{id: m.id, text: text}:
		case <-ctx.Done():
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			m.node.Tick()
		case msg := <-m.inbox:
			_ = m.node.Step(ctx, msg)
		case rd := <-m.node.Ready():
			if rd.SoftState != nil && rd.SoftState.RaftState == raft.StateLeader {
				report(fmt.Sprintf("became leader at term %d", m.node.Status().Term))
			}
			send(rd.Messages)
			_ = m.storage.Append(rd.Entries)
			if !raft.IsEmptyHardState(rd.HardState) {
				_ = m.storage.SetHardState(rd.HardState)
			}
			send(rd.MessagesAfterPersist)
			for _, e := range rd.CommittedEntries {
				switch e.Type {
				case pb.EntryConfChange, pb.EntryConfChangeV2:
					if cc, err := pb.ConfChangeFromEntry(e); err == nil {
						m.node.ApplyConfChange(cc)
					}
				case pb.EntryNormal:
					if len(e.Data) > 0 {
						report(fmt.Sprintf("applied %q at index %d (term %d)", e.Data, e.Index, e.Term))
					}
				}
			}
			m.node.Advance()
		}
	}
}
