package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) txnCommand() *cobra.Command {
	var interactive bool
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Run a transaction read from standard input",
		Long: `Txn reads a transaction from standard input in three sections, each ended by
a blank line: the compares, the requests to run if all compares hold, and the
requests to run otherwise. For example:

  mod("key1") > "0"
  value("key2") = "x"

  put key1 "overwrote key1"
  get key2

  put key1 "created key1"

A compare is TARGET("key"[, "range_end"]) OP "value" where TARGET is mod,
create, version, value or lease (a hexadecimal lease ID), and OP is =, !=, <
or >. A request is put, get or del with the arguments and flags of the
command of the same name; "double-quoted" words take Go escapes (\n, \x00).

It prints SUCCESS or FAILURE, then the result of each request that ran.
With --interactive, or when standard input is a terminal, it prompts for
each section (on standard error) and stops reading after the third.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			var prompt io.Writer
			if f, ok := in.(*os.File); interactive || (ok && isTerminal(f)) {
				prompt = a.stderr
			}
			req, err := parseTxn(in, prompt)
			if err != nil {
				return fmt.Errorf("txn: %w", err)
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()
			resp, err := c.Txn(ctx).If(req.compares...).Then(req.success...).Else(req.failure...).Commit()
			if err != nil {
				return a.explain(err, nil)
			}
			ops := req.failure
			if resp.Succeeded {
				ops = req.success
			}
			return a.printer().txn(resp, ops)
		},
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "prompt for each section of the transaction")
	return cmd
}

// txn prints a transaction's outcome: SUCCESS or FAILURE, then, after a blank
// line each, the results of the requests that ran (ops, in order).
func (p *printer) txn(resp *clientv3.TxnResponse, ops []clientv3.Op) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	if resp.Succeeded {
		p.linef("SUCCESS")
	} else {
		p.linef("FAILURE")
	}
	for i, r := range resp.Responses {
		p.linef("")
		var op clientv3.Op
		if i < len(ops) {
			op = ops[i]
		}
		switch {
		case r.GetResponsePut() != nil:
			if err := p.put((*clientv3.PutResponse)(r.GetResponsePut())); err != nil {
				return err
			}
		case r.GetResponseRange() != nil:
			o := getOptions{keysOnly: op.IsKeysOnly(), countOnly: op.IsCountOnly()}
			if err := p.get((*clientv3.GetResponse)(r.GetResponseRange()), o); err != nil {
				return err
			}
		case r.GetResponseDeleteRange() != nil:
			if err := p.del((*clientv3.DeleteResponse)(r.GetResponseDeleteRange()), true); err != nil {
				return err
			}
		case r.GetResponseTxn() != nil:
			if err := p.txn((*clientv3.TxnResponse)(r.GetResponseTxn()), nil); err != nil {
				return err
			}
		}
	}
	return nil
}
