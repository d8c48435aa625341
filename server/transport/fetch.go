package transport

import (
	"context"
	"errors"
	"fmt"
)

// FetchCluster asks the members at urls, in turn, for the cluster they
// belong to, and returns the first answer: the cluster ID and the bytes of
// that member's Handler.ClusterInfo (its member list). A member started to
// join an existing cluster uses it to learn the cluster ID and its peers
// before it can start its own transport. localID is the joining member's
// ID, or 0 if it does not know it yet; a member that was removed from the
// cluster is refused with an error wrapping ErrMemberRemoved.
//
// Each URL gets the default dial timeout (2s) to connect and the default
// idle timeout (5s) to answer, within ctx. If no member answers, the error
// joins the failure of every URL.
func FetchCluster(ctx context.Context, urls []string, localID uint64) (clusterID uint64, info []byte, err error) {
	addrs, err := parseURLs(urls)
	if err != nil {
		return 0, nil, fmt.Errorf("transport: fetch cluster: %w", err)
	}
	var errs []error
	for i, addr := range addrs {
		id, info, err := fetchOne(ctx, urls[i], addr, localID)
		if err == nil {
			return id, info, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return 0, nil, fmt.Errorf("transport: no member answered the cluster info request at %v: %w", urls, errors.Join(errs...))
}

func fetchOne(ctx context.Context, url, addr string, localID uint64) (uint64, []byte, error) {
	c, resp, err := dialResponse(ctx, defaultDialTimeout, nil, url, addr, handshake{
		version: protocolVersion, kind: kindClusterInfo, from: localID, keepalive: maxKeepaliveInterval,
	})
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	release := closeOnCancel(ctx, c)
	defer release()
	fr := newFrameReader(c, defaultIdleTimeout, defaultMaxFrameBytes)
	t, info, err := fr.next(nil)
	if err == nil && t != frameClusterInfo {
		err = fmt.Errorf("%w: %s frame where cluster info was expected", ErrProtocol, t)
	}
	if err == nil && resp.clusterID == 0 {
		err = fmt.Errorf("%w: member %x reported cluster ID 0", ErrProtocol, resp.memberID)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return 0, nil, fmt.Errorf("cluster info from %s: %w", url, noEOF(err))
	}
	return resp.clusterID, info, nil
}
