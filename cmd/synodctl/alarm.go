package main

import (
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) alarmCommand() *cobra.Command {
	return groupCommand("alarm", "List or disarm the cluster's alarms",
		a.alarmListCommand(),
		a.alarmDisarmCommand(),
	)
}

func (a *app) alarmListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the active alarms (e.g. NOSPACE)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()
			resp, err := c.AlarmList(ctx)
			if err != nil {
				return a.explain(err, nil)
			}
			return a.printer().alarms(resp)
		},
	}
}

func (a *app) alarmDisarmCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "disarm",
		Short: "Disarm all active alarms, printing those disarmed",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()
			// A zero AlarmMember asks the client to disarm every active alarm.
			resp, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{})
			if err != nil {
				return a.explain(err, nil)
			}
			return a.printer().alarms(resp)
		},
	}
}

// alarms prints one "memberID:<hex id> alarm:<type>" line per alarm.
func (p *printer) alarms(resp *clientv3.AlarmResponse) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	for _, al := range resp.Alarms {
		p.linef("memberID:%s alarm:%s", memberIDString(al.GetMemberID()), al.GetAlarm())
	}
	return nil
}
