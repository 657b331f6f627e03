// Command feedwriter appends membership changes to the runner's change feed
// through the runner's own cache (cache.AppendFeed, orgsync.FeedStream), with
// the fields orgsync's recordChange writes, signed as it signs them
// (orgsync.SignFeedFields with the assertion key). The Python feed consumer's
// tests and the Django demo use it to put real feed entries in Redis without a
// Keycloak admin change.
//
//	feedwriter -redis redis://127.0.0.1:6379/0 [-prefix apisix-identity:] \
//	    -key assertion-signing-key.pem [-jwks-out jwks.json] \
//	    -user <keycloak user id> [-added acme,globex] [-removed initech] [-n 1]
//
// -jwks-out writes the key set that verifies the entries (what the runner's
// JWKS route publishes for the same key file).
//
// With -n N it writes N changes for the same user, numbering the added alias
// (acme-1, acme-2, ...), to fill a stream quickly.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
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
	keyFile := fs.String("key", os.Getenv("RUNNER_SIGNING_KEY_FILE"), "PEM key signing the entries (default $RUNNER_SIGNING_KEY_FILE)")
	jwksOut := fs.String("jwks-out", "", "write the verifying key set (JWKS) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *redisURL == "" || *user == "" || *keyFile == "" {
		return fmt.Errorf("-redis, -user and -key are required")
	}
	keys, err := assertion.LoadFile(*keyFile)
	if err != nil {
		return err
	}
	if *jwksOut != "" {
		if err := os.WriteFile(*jwksOut, keys.JWKS(), 0o644); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The feed is not a cached value: no value is read or written, and any secret will do.
	secret := make([]byte, cache.MinValueSecret)
	_, _ = rand.Read(secret)
	c, err := cache.New(ctx, &cache.Options{RedisURL: *redisURL, KeyPrefix: *prefix, ValueSecret: secret})
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
		fields := orgsync.FeedFields(*user, add, split(*removed), *source, time.Now())
		if err := orgsync.SignFeedFields(keys, c.FeedKey(orgsync.FeedStream), fields); err != nil {
			return err
		}
		if err := c.AppendFeed(ctx, orgsync.FeedStream, *maxLen, fields); err != nil {
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
