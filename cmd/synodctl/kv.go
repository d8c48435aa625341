package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file holds the key-value commands put, get and del. Their request
// flags are bound by bind*Flags and turned into a clientv3.Op by the options'
// op method, so that txn parses its "put ...", "get ...", "del ..." lines with
// exactly the same flags.

// putOptions are the request flags of put.
type putOptions struct {
	prevKV      bool
	ignoreValue bool
	ignoreLease bool
	lease       string
}

func bindPutFlags(fs *pflag.FlagSet, o *putOptions) {
	fs.BoolVar(&o.prevKV, "prev-kv", false, "return the key-value pair as it was before this put")
	fs.BoolVar(&o.ignoreValue, "ignore-value", false, "keep the key's current value (updates the lease only)")
	fs.BoolVar(&o.ignoreLease, "ignore-lease", false, "keep the key's current lease (updates the value only)")
	fs.StringVar(&o.lease, "lease", "0", "attach the key to this lease (ID in hexadecimal)")
}

// op builds the put of value (nil when none was given) at key.
func (o *putOptions) op(key string, value *string) (clientv3.Op, error) {
	var opts []clientv3.OpOption
	leaseID, err := parseLeaseID(o.lease)
	if err != nil {
		return clientv3.Op{}, err
	}
	if leaseID != 0 {
		if o.ignoreLease {
			return clientv3.Op{}, errors.New("--lease and --ignore-lease cannot be used together")
		}
		opts = append(opts, clientv3.WithLease(leaseID))
	}
	if o.ignoreLease {
		opts = append(opts, clientv3.WithIgnoreLease())
	}
	val := ""
	switch {
	case o.ignoreValue && value != nil:
		return clientv3.Op{}, errors.New("a value cannot be given with --ignore-value")
	case o.ignoreValue:
		opts = append(opts, clientv3.WithIgnoreValue())
	case value == nil:
		return clientv3.Op{}, errors.New("put needs a value (or --ignore-value)")
	default:
		val = *value
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	return clientv3.OpPut(key, val, opts...), nil
}

// parseLeaseID parses a lease ID written in hexadecimal, as etcd prints them.
func parseLeaseID(s string) (clientv3.LeaseID, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("bad lease ID %q: want a hexadecimal number such as 694d77aa9e38260f", s)
	}
	return clientv3.LeaseID(id), nil
}

// getOptions are the request flags of get.
type getOptions struct {
	prefix    bool
	fromKey   bool
	limit     int64
	rev       int64
	order     string
	sortBy    string
	keysOnly  bool
	countOnly bool

	// Only for the get command, not for get lines in txn.
	consistency    string
	printValueOnly bool
}

func bindGetFlags(fs *pflag.FlagSet, o *getOptions) {
	fs.BoolVar(&o.prefix, "prefix", false, "get all keys with the prefix <key>")
	fs.BoolVar(&o.fromKey, "from-key", false, "get all keys >= <key> (byte order)")
	fs.Int64Var(&o.limit, "limit", 0, "return at most this many keys (0: no limit)")
	fs.Int64Var(&o.rev, "rev", 0, "read at this revision (0: the latest)")
	fs.StringVar(&o.order, "order", "", "sort order: ASCEND or DESCEND")
	fs.StringVar(&o.sortBy, "sort-by", "", "sort by KEY, VERSION, CREATE, MODIFY or VALUE")
	fs.BoolVar(&o.keysOnly, "keys-only", false, "return only the keys")
	fs.BoolVar(&o.countOnly, "count-only", false, "return only the number of keys")
}

// op builds the get of key, or of [key, end) when end is not nil.
func (o *getOptions) op(key string, end *string) (clientv3.Op, error) {
	opts, err := rangeOptions(end, o.prefix, o.fromKey)
	if err != nil {
		return clientv3.Op{}, err
	}
	if o.limit < 0 {
		return clientv3.Op{}, fmt.Errorf("--limit must not be negative, got %d", o.limit)
	}
	if o.rev < 0 {
		return clientv3.Op{}, fmt.Errorf("--rev must not be negative, got %d", o.rev)
	}
	if o.keysOnly && o.countOnly {
		return clientv3.Op{}, errors.New("--keys-only and --count-only cannot be used together")
	}
	if o.printValueOnly && o.keysOnly {
		return clientv3.Op{}, errors.New("--print-value-only and --keys-only cannot be used together")
	}
	if o.limit > 0 {
		opts = append(opts, clientv3.WithLimit(o.limit))
	}
	if o.rev > 0 {
		opts = append(opts, clientv3.WithRev(o.rev))
	}
	target, order, sorted, err := parseSort(o.sortBy, o.order)
	if err != nil {
		return clientv3.Op{}, err
	}
	if sorted {
		opts = append(opts, clientv3.WithSort(target, order))
	}
	if o.keysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	if o.countOnly {
		opts = append(opts, clientv3.WithCountOnly())
	}
	switch strings.ToLower(o.consistency) {
	case "", "l":
	case "s":
		opts = append(opts, clientv3.WithSerializable())
	default:
		return clientv3.Op{}, fmt.Errorf("unknown --consistency %q: want l (linearizable) or s (serializable)", o.consistency)
	}
	return clientv3.OpGet(key, opts...), nil
}

// parseSort interprets --sort-by and --order. A sort order alone sorts by
// key; a sort target alone sorts ascending; neither leaves the server's
// order (ascending by key).
func parseSort(sortBy, order string) (clientv3.SortTarget, clientv3.SortOrder, bool, error) {
	if sortBy == "" && order == "" {
		return 0, 0, false, nil
	}
	target := clientv3.SortByKey
	switch strings.ToUpper(sortBy) {
	case "", "KEY":
	case "VERSION":
		target = clientv3.SortByVersion
	case "CREATE":
		target = clientv3.SortByCreateRevision
	case "MODIFY":
		target = clientv3.SortByModRevision
	case "VALUE":
		target = clientv3.SortByValue
	default:
		return 0, 0, false, fmt.Errorf("unknown --sort-by %q: want KEY, VERSION, CREATE, MODIFY or VALUE", sortBy)
	}
	ord := clientv3.SortAscend
	switch strings.ToUpper(order) {
	case "", "ASCEND":
	case "DESCEND":
		ord = clientv3.SortDescend
	default:
		return 0, 0, false, fmt.Errorf("unknown --order %q: want ASCEND or DESCEND", order)
	}
	return target, ord, true, nil
}

// delOptions are the request flags of del.
type delOptions struct {
	prefix  bool
	fromKey bool
	prevKV  bool
}

func bindDelFlags(fs *pflag.FlagSet, o *delOptions) {
	fs.BoolVar(&o.prefix, "prefix", false, "delete all keys with the prefix <key>")
	fs.BoolVar(&o.fromKey, "from-key", false, "delete all keys >= <key> (byte order)")
	fs.BoolVar(&o.prevKV, "prev-kv", false, "return the deleted key-value pairs")
}

// op builds the delete of key, or of [key, end) when end is not nil.
func (o *delOptions) op(key string, end *string) (clientv3.Op, error) {
	opts, err := rangeOptions(end, o.prefix, o.fromKey)
	if err != nil {
		return clientv3.Op{}, err
	}
	if o.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	return clientv3.OpDelete(key, opts...), nil
}

// rangeOptions turns [range_end], --prefix and --from-key into options.
func rangeOptions(end *string, prefix, fromKey bool) ([]clientv3.OpOption, error) {
	switch {
	case prefix && fromKey:
		return nil, errors.New("--prefix and --from-key cannot be used together")
	case prefix && end != nil:
		return nil, errors.New("range_end cannot be given with --prefix")
	case fromKey && end != nil:
		return nil, errors.New("range_end cannot be given with --from-key")
	case prefix:
		return []clientv3.OpOption{clientv3.WithPrefix()}, nil
	case fromKey:
		return []clientv3.OpOption{clientv3.WithFromKey()}, nil
	case end != nil:
		return []clientv3.OpOption{clientv3.WithRange(*end)}, nil
	}
	return nil, nil
}

// optionalArg returns args[i], or nil when there are not that many.
func optionalArg(args []string, i int) *string {
	if i < len(args) {
		return &args[i]
	}
	return nil
}

func (a *app) putCommand() *cobra.Command {
	var o putOptions
	cmd := &cobra.Command{
		Use:   "put <key> [value]",
		Short: "Put a key, reading the value from standard input if it is not given",
		Long: `Put sets <key> to [value]. Without [value] (and without --ignore-value) the
value is the whole of standard input, byte for byte (so "echo v | synodctl put k"
stores "v\n"). A value starting with "-" goes after "--": put -- key -value.`,
		Args: argsBetween(1, 2, "<key> [value]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			value := optionalArg(args, 1)
			if value == nil && !o.ignoreValue {
				v, err := readValue(cmd)
				if err != nil {
					return err
				}
				value = &v
			}
			op, err := o.op(args[0], value)
			if err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			resp, err := a.do(cmd, op)
			if err != nil {
				return err
			}
			return a.printer().put(resp.Put())
		},
	}
	bindPutFlags(cmd.Flags(), &o)
	return cmd
}

// readValue reads put's value from standard input, refusing to wait on a
// terminal where the user probably forgot the value.
func readValue(cmd *cobra.Command) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		return "", usageErrorf(cmd, "put expects <key> [value]: no value given; pass it as an argument or on standard input")
	}
	b, err := io.ReadAll(in)
	if err != nil {
		return "", fmt.Errorf("reading the value from standard input: %w", err)
	}
	return string(b), nil
}

// isTerminal reports whether f looks like an interactive terminal: a
// character device other than the null device.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(st, null) {
		return false
	}
	return true
}

func (a *app) getCommand() *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get <key> [range_end]",
		Short: "Get a key or a range of keys",
		Long: `Get reads <key>, or the keys in [<key>, <range_end>), or with --prefix all keys
starting with <key>, or with --from-key all keys from <key> on. Use
get "" --prefix for every key.`,
		Args: argsBetween(1, 2, "<key> [range_end]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			op, err := o.op(args[0], optionalArg(args, 1))
			if err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			resp, err := a.do(cmd, op)
			if err != nil {
				return err
			}
			return a.printer().get(resp.Get(), o)
		},
	}
	bindGetFlags(cmd.Flags(), &o)
	cmd.Flags().StringVar(&o.consistency, "consistency", "l", "read consistency: l (linearizable) or s (serializable)")
	cmd.Flags().BoolVar(&o.printValueOnly, "print-value-only", false, "print only the values (simple output)")
	return cmd
}

func (a *app) delCommand() *cobra.Command {
	var o delOptions
	cmd := &cobra.Command{
		Use:   "del <key> [range_end]",
		Short: "Delete a key or a range of keys",
		Long: `Del deletes <key>, or the keys in [<key>, <range_end>), or with --prefix all
keys starting with <key>, or with --from-key all keys from <key> on. It prints
the number of keys deleted.`,
		Aliases: []string{"delete"},
		Args:    argsBetween(1, 2, "<key> [range_end]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			op, err := o.op(args[0], optionalArg(args, 1))
			if err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			resp, err := a.do(cmd, op)
			if err != nil {
				return err
			}
			return a.printer().del(resp.Del(), o.prevKV)
		},
	}
	bindDelFlags(cmd.Flags(), &o)
	return cmd
}

// do connects and runs one KV operation under --command-timeout.
func (a *app) do(cmd *cobra.Command, op clientv3.Op) (clientv3.OpResponse, error) {
	c, err := a.connect(nil)
	if err != nil {
		return clientv3.OpResponse{}, err
	}
	defer c.Close()
	ctx, cancel := a.requestContext(cmd.Context())
	defer cancel()
	resp, err := c.Do(ctx, op)
	return resp, a.explain(err, nil)
}

// put prints a put's response: "OK", then the previous pair if any.
func (p *printer) put(resp *clientv3.PutResponse) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	p.linef("OK")
	if resp.PrevKv != nil {
		p.kv(resp.PrevKv, false, false)
	}
	return nil
}

// get prints a get's response: the pairs, or their count under --count-only.
func (p *printer) get(resp *clientv3.GetResponse, o getOptions) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	if o.countOnly {
		p.linef("%d", resp.Count)
		return nil
	}
	for _, kv := range resp.Kvs {
		p.kv(kv, o.keysOnly, o.printValueOnly)
	}
	return nil
}

// del prints a delete's response: the number deleted, then the deleted pairs
// under --prev-kv.
func (p *printer) del(resp *clientv3.DeleteResponse, prevKV bool) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	p.linef("%d", resp.Deleted)
	if prevKV {
		for _, kv := range resp.PrevKvs {
			p.kv(kv, false, false)
		}
	}
	return nil
}
