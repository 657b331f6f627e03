// Command feedwriter appends membership changes to the runner's change feed
// through the runner's own cache (cache.AppendFeed, orgsync.FeedStream), with
// the fields orgsync's recordChange writes. The Python feed consumer's tests
// and the Django demo use it to put real feed entries in Redis without a
// Keycloak admin change.
//
//	feedwriter -redis redis://127.0.0.1:6379/0 [-prefix apisix-identity:] \
//	    -user <keycloak user id> [-added acme,globex] [-removed initech] [-n 1]
//
// With -n N it writes N changes for the same user, numbering the added alias
// (acme-1, acme-2, ...), to fill a stream quickly.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "feedwriter:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("feedwriter", flag.ContinueOnError)
	redisURL := fs.String("redis", os.Getenv("REDIS_URL"), "Redis URL (default $REDIS_URL)")
	prefix := fs.String("prefix", "apisix-identity:", "the runner cache's key prefix")
	user := fs.String("user", "", "Keycloak user id whose memberships changed")
	added := fs.String("added", "", "comma-separated aliases added")
	removed := fs.String("removed", "", "comma-separated aliases removed")
	source := fs.String("source", orgsync.SourceKeycloak, "the change's source")
	n := fs.Int("n", 1, "how many changes to write")
	maxLen := fs.Int64("maxlen", orgsync.FeedMaxLen, "the stream's approximate cap")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *redisURL == "" || *user == "" {
		return fmt.Errorf("-redis and -user are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cache.New(ctx, &cache.Options{RedisURL: *redisURL, KeyPrefix: *prefix})
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	for i := 1; i <= *n; i++ {
		add := split(*added)
		if *n > 1 {
			for j := range add {
				add[j] = fmt.Sprintf("%s-%d", add[j], i)
			}
		}
		err := c.AppendFeed(ctx, orgsync.FeedStream, *maxLen,
			orgsync.FeedFields(*user, add, split(*removed), *source, time.Now()))
		if err != nil {
			return err
		}
	}
	return nil
}

func split(s string) []string {
	out := []string{}
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
