package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchOptions are the request flags of watch.
type watchOptions struct {
	prefix         bool
	fromKey        bool
	rev            int64
	prevKV         bool
	progressNotify bool
}

func bindWatchFlags(fs *pflag.FlagSet, o *watchOptions) {
	fs.BoolVar(&o.prefix, "prefix", false, "watch all keys with the prefix <key>")
	fs.BoolVar(&o.fromKey, "from-key", false, "watch all keys >= <key> (byte order)")
	fs.Int64Var(&o.rev, "rev", 0, "start at this revision, replaying the history since (0: from now on)")
	fs.BoolVar(&o.prevKV, "prev-kv", false, "print the previous key-value pair of each change")
	fs.BoolVar(&o.progressNotify, "progress-notify", false, "ask for periodic progress notifications while nothing changes")
}

// options turns the flags and [range_end] into watch options.
func (o *watchOptions) options(end *string) ([]clientv3.OpOption, error) {
	opts, err := rangeOptions(end, o.prefix, o.fromKey)
	if err != nil {
		return nil, err
	}
	if o.rev < 0 {
		return nil, fmt.Errorf("--rev must not be negative, got %d", o.rev)
	}
	if o.rev > 0 {
		opts = append(opts, clientv3.WithRev(o.rev))
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if o.progressNotify {
		opts = append(opts, clientv3.WithProgressNotify())
	}
	return opts, nil
}

func (a *app) watchCommand() *cobra.Command {
	var o watchOptions
	cmd := &cobra.Command{
		Use:   "watch <key> [range_end]",
		Short: "Print the changes to a key or a range of keys as they happen, until interrupted",
		Long: `Watch prints every change to <key>, or to the keys in [<key>, <range_end>), or
with --prefix to all keys starting with <key>, or with --from-key to all keys
from <key> on, until interrupted (Ctrl-C).

Simple output prints, per change, its type (PUT or DELETE), then with
--prev-kv the previous key and value, then the key and the new value (empty
for a delete), each on its own line, as etcdctl does; a progress notification
prints "progress notify: <revision>". JSON output prints each response as one
line. With --rev the history from that revision is printed first. The watch
requires a leader: it ends with an error if the member loses its leader, and
with the revision to resume from if --rev was compacted.`,
		Args: argsBetween(1, 2, "<key> [range_end]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := o.options(optionalArg(args, 1))
			if err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			w, ok := c.(clientv3.Watcher)
			if !ok {
				return errors.New("this client cannot watch")
			}
			ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(cmd.Context()))
			defer cancel()
			return a.printer().watch(ctx, w.Watch(ctx, args[0], opts...))
		},
	}
	bindWatchFlags(cmd.Flags(), &o)
	return cmd
}

// watch prints the responses of wch until ctx ends (a normal exit) or the
// watch ends with an error.
func (p *printer) watch(ctx context.Context, wch clientv3.WatchChan) error {
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case resp, ok = <-wch:
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("the watch was closed by the server")
		}
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch canceled: %v (the oldest revision still available is %d: watch again with --rev=%d)",
				resp.Err(), resp.CompactRevision, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch canceled: %w", err)
		}
		if p.format == formatJSON {
			if err := p.json(resp); err != nil {
				return err
			}
			continue
		}
		if resp.IsProgressNotify() {
			p.linef("progress notify: %d", resp.Header.Revision)
			continue
		}
		for _, e := range resp.Events {
			p.linef("%s", e.Type)
			if e.PrevKv != nil {
				p.kv(e.PrevKv, false, false)
			}
			p.kv(e.Kv, false, false)
		}
	}
}
