// Package cache is a two-tier cache for values a process fetches from a slow source (orgsync: a
// user's organizations from Keycloak): a bounded in-process LRU in front of Redis, so a fleet of
// gateways shares one view and one fetch per cold key.
//
// # Tiers
//
// Every value carries the time its loader was called to produce it (Entry.FetchedAt, millisecond
// precision): a change made while the loader ran may be missing from the value, so its age counts
// from the question, not the answer.
// The caller's Policy says how old a value may be: younger than Fresh it is served; between Fresh
// and Stale it is served while one background refresh runs; older, it is reloaded first. The
// in-process tier answers alone for LocalTTL after it stored or confirmed a value, then asks Redis
// again, so an invalidation missed by this process lingers at most LocalTTL. Redis keeps values for
// Retention, the horizon of the "last known value" served when the loader fails.
//
// Without Options.RedisURL the in-process tier runs alone: the process is the fleet.
//
// # Stampede control
//
// One load per key runs in a process at a time; concurrent Gets share it. Across processes, the
// process that wins a short Redis lock (SET NX PX LockTTL) loads and stores; the others poll Redis
// for its value for up to LockWait, then load themselves. A load runs at most LockTTL and is not
// cancelled when the caller that started it gives up.
//
// # Redis outages
//
// Every Redis command has OpTimeout (500 ms by default, the wait for a pooled connection
// included; the pool holds 64 connections unless the URL sets pool_size). A slow Redis is not a
// dead one: one failed command changes nothing. Outcomes go into a breaker over a 5 s window, and
// Redis is declared down when at least 5 commands failed and they are 80 % of the window's, or
// when 5 failed in a row over at least 1 s with no success between them (a Redis that stopped
// answering). Until then the fill lock stays in use. A command of the fill path (the lock, the
// look in Redis after it, the store of the loaded value, the unlock) that times out is sent again
// with twice the patience, up to three times (OpTimeout, 2x, 4x; a retry often pays a new
// connection's handshake too), because a lost answer there costs a loader call; a lock SET that timed out is followed by a look at who holds the lock (it
// may be ours); a timed-out read while waiting for another process's fill does not end the wait.
// Once down, the cache logs "redis unavailable" (warn), stops asking Redis on
// the Get path, serves from the in-process tier and the loader, and pings every second; the first
// command that succeeds logs "redis recovered" (warn, like the outage, once) and Redis is used
// again. No Get fails because of Redis. Operations that only make sense with Redis
// (Invalidate's fan-out, leases, state, feed) return the error. New installs a go-redis logger
// that sends go-redis's own lines to slog at Debug level, so that a dead Redis does not log once
// per dial attempt.
//
// # Fills
//
// The process that wins the fill lock looks in Redis once more before it calls the loader: a
// value younger than the caller's Fresh found there was stored by another process between this
// one's read and its lock, and is used instead of a second load. With several processes sharing
// Redis the loader is thus called once per key per Fresh window. A holder that lets the lock go
// without a value (its load failed) is replaced by one of the processes that waited for it, which
// takes the lock in turn while the others wait again (up to three holders), instead of all of
// them loading at once.
//
// # The in-process tier
//
// A least-recently-used map bounded by Options.LocalSize entries (100 000) and
// Options.LocalMaxBytes (64 MiB), counting keys, values and about 200 bytes of bookkeeping per
// entry (TestLocalBytesAccounting measures it). An orgsync user costs about 350 bytes, so the
// default holds 100 000 active users in about 35 MB. NoLocal turns it off (every hit then asks
// Redis). SetRemote and PeekRemote keep bookkeeping values out of it: in Redis, or without Redis
// in a separate LRU of the same entry bound and a quarter of the bytes.
//
// # Invalidation
//
// Invalidate deletes keys here and in Redis and publishes them on Options.Channel; every other
// process drops its in-process copy when the message arrives (milliseconds). Loads of those keys
// that were running when the invalidation arrived do not store their results. When the
// subscription breaks and comes back, the process flushes its in-process tier, since messages may
// have been missed in between.
//
// # What Redis holds is not trusted
//
// Values go into Redis sealed: an HMAC-SHA256 under Options.ValueSecret (the fleet's secret,
// required with Redis, at least 32 bytes) over the value's full Redis key, its fetch time and its
// bytes. A value that is not sealed, fails the MAC (forged, altered, copied from another key, or
// an old value given a new date) or is dated more than 5 s ahead of this process's clock is a
// miss: it is loaded again, counted in redis_values_rejected_total and logged at most once a
// minute (reason and key; never the value or the secret). State (GetState) is sealed the same way
// and reads as unset when it fails. What a Redis writer without the secret
// can still do: delete values (a reload, one per key in the process and, with the fill lock, in
// the fleet), put back an older genuine value of the same key (it keeps its own fetch time: served
// only while its age is under the caller's Stale, or under Retention while the loader fails),
// publish invalidations, hold fill locks and leases (others wait up to LockWait, then load), and
// delete or put back older state. Each costs loads, not a value of its choosing. Feed records are
// not sealed here: their writer signs them (orgsync). The in-process tier is this process's memory and is
// not sealed.
//
// # Revocations
//
// Revocations (revoke.go) is the fleet's record of ended sessions: one session (issuer, sid), or
// every session of a subject whose tokens were issued at or before a time. Revoke applies it in
// this process at once, then stores it in Redis under its own key until its Until (SET PX) and
// publishes it on Options.Channel in the same round trip; every other process applies the
// message as it arrives (a few milliseconds: TestRevocationReachesEveryProcess logs the figure
// and holds it under a second). Each process that applied it (or already held it) acknowledges
// it on the channel to the publisher; with a context from AwaitPeers (the back-channel logout
// route's), Revoke returns only once every other subscriber counted by the PUBLISH did, or after
// 500 ms (a subscriber that never answers: an older
// runner, or a process of another fleet on the same channel that cannot open the value;
// counted in revocations_ack_timeouts_total). So once such a Revoke returned, and the
// back-channel route answered Keycloak, no process of the fleet serves the session (TestFleetRevocation in
// test/integration). Acknowledgements are not sealed: a forged one only ends that wait early.
// Revoked answers from the in-process copy alone: no I/O, no
// allocation, one RLock (an atomic load while nothing is revoked; BenchmarkRevoked*). Two
// revocations of one key merge to the later At and the later Until.
//
// NewRevocations loads every live revocation from Redis (SCAN over rev:*, each master of a
// Cluster, GETs pipelined by 1000) for at most LoadTimeout (5 s), and again whenever the cache's
// subscription is established after a break or a late start, since messages may have been
// missed (Redis down at start: it starts empty, says so once, and loads then). Loads merge:
// a revocation this process holds is kept until its Until even when Redis no longer has it.
// When Redis does not take a revocation, Revoke returns ErrNotShared (wrapped): the session is
// refused in this process only, and the revocation is stored and published again once Redis
// answers (at most 10 000 wait; the oldest go first, counted). Without RedisURL (or a nil
// cache) the process is the fleet. Close stops the background work; close it before the cache.
//
// The in-process copy is bounded by MaxEntries (200 000) and MaxBytes (64 MiB; identifiers plus
// 200 bytes each, TestRevocationBytesAccounting measures it). At the bound the entries that
// expire soonest are dropped to make room, and a new revocation always gets in: the newest is
// the one whose tokens are most likely in use, and the soonest to expire protect for the
// shortest time. Each drop is counted (revocations_evicted_total) and logged at most once a
// minute. Evicted entries stay in Redis; a load into a full copy keeps those that expire last.
// Only producers that verified a signed logout token or read an admin event revoke, so a flood
// is bounded upstream; this bound keeps memory safe if it is not. Identifiers longer than 1 KiB
// are refused.
//
// Values are sealed like the cache's (the MAC over key, time and bytes), and a value counts
// only under the key derived from its own content, so a Redis writer without the secret can
// neither plant a revocation (in Redis or on the channel) nor change one: both are refused,
// counted in redis_values_rejected_total. It can delete them: processes already holding them
// keep them, but a process that starts (or reloads) afterwards does not see them, and a Redis
// that loses its data (restart without persistence) forgets them the same way. It can replay a
// genuine message, which changes nothing before its Until.
//
// # URL forms
//
//	redis://[user:pass@]host:port[/db][?opts]                        one server; rediss:// for TLS
//	unix://[user:pass@]/path/redis.sock[?db=N&opts]                  one server on this host, its unix socket
//	redis+sentinel://[user:pass@]h1:p1[,h2:p2...]/MASTER[/db][?opts] Sentinel
//	redis+cluster://[user:pass@]h1:p1[,h2:p2...][?opts]               Cluster seed nodes
//
// rediss+sentinel:// and rediss+cluster:// use TLS. For Sentinel, user:pass authenticates to the
// sentinels and, unless username= or password= parameters are given, to the master too. opts are
// go-redis URL options (redis.ParseURL, ParseFailoverURL, ParseClusterURL: dial_timeout=1s,
// pool_size=20, skip_verify=true, ...); unknown options are errors. Errors never repeat the URL.
// The client speaks RESP2 unless the URL sets protocol= (protocolOf).
//
// # Redis keys (under Options.KeyPrefix, default "apisix-identity:")
//
//	v:<key>        value: 1 version byte (2), 8-byte big-endian unix ms of the fetch, 32-byte MAC, the value; PX Retention
//	lock:<key>     fill lock: random token; PX LockTTL
//	lease:<name>   lease: random token; PX the lease ttl
//	state:<name>   small string state, sealed like values; no expiry
//	feed:<stream>  capped stream (XADD MAXLEN ~)
//	rev:<sha256>   revocation, sealed like values: 1 format byte (1), kind (0 sid, 1 sub), At and Until
//	               (8-byte unix ms each), issuer and id (each after a 2-byte length); PX until Until;
//	               the name is the hash of the content: one key per distinct revocation
//	invalidate     pub/sub channel (Options.Channel): {"from":"<process id>","keys":[...]}, or
//	               {"from":...,"rev":{"key":"<rev: key>","val":"<sealed value, base64>"}}, or
//	               {"from":...,"ack":"<rev: key>","to":"<the publisher's id>"}
//
// Each Lua script touches one key, so everything works on Redis Cluster.
//
// # Metrics
//
//   - apisix_identity_cache_hits_total{tier="local|redis"}: fresh values served from a tier
//   - apisix_identity_cache_misses_total: Gets that loaded synchronously
//   - apisix_identity_cache_loads_total{result="ok|error"}: loader calls by this process
//   - apisix_identity_cache_stale_served_total{reason="refreshing|load_error"}
//   - apisix_identity_cache_redis_errors_total{kind="timeout|connection"}
//   - apisix_identity_cache_fill_rechecks_total: fills that found another process's value after the lock
//   - apisix_identity_cache_redis_up: 1 while Redis answers, 0 while not; absent without REDIS_URL
//   - apisix_identity_cache_invalidations_received_total: messages from other processes
//   - apisix_identity_cache_local_flushes_total: flushes after a resubscription
//   - apisix_identity_cache_fill_waits_total{outcome="filled|released|timeout"}: waits for another process's fill
//   - apisix_identity_cache_redis_values_rejected_total{reason="mac|format|future"}: Redis reads refused as misses
//   - apisix_identity_cache_revocations_stored_total{result="shared|local|pending"}: Revoke calls of this process
//   - apisix_identity_cache_revocations_applied_total{source="message|load"}: other processes' revocations applied
//   - apisix_identity_cache_revocations_expired_total: dropped at their Until
//   - apisix_identity_cache_revocations_evicted_total{where="memory|pending"}: dropped at a bound
//   - apisix_identity_cache_revocations_ack_timeouts_total: Revoke calls that did not hear from every subscriber within 500 ms
//   - apisix_identity_cache_revocations_entries: revocations held in this process
//
// # Limits
//
//   - A load in another process that started before an invalidation and stores after the message
//     was handled there can put the old value back in Redis; it is then served until its age passes
//     the caller's Fresh. Keep Fresh short enough for that (orgsync: fresh_ttl).
//   - While Redis is down, processes do not see each other's invalidations: another process keeps
//     serving its copy until the copy's age passes the caller's Fresh (up to Retention if the loader
//     fails as well).
//   - Stale values are served past Fresh by design, up to Stale, and up to Retention while the
//     loader fails.
//   - The feed's cap is approximate with Redis (whole blocks of about 100 entries).
package cache
