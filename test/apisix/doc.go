// Package apisix plays Apache APISIX's side of the external plugin protocol so
// that tests can drive a real runner binary the way APISIX 3.x does.
//
// It mirrors apisix/plugins/ext-plugin/init.lua (apache/apisix 3.18.0):
//
//   - Runner starts the runner binary as APISIX's privileged agent does:
//     APISIX_LISTEN_ADDRESS=unix:<sock>, APISIX_CONF_EXPIRE_TIME=<seconds>, an
//     environment cleared like nginx's (only TZ and what nginx_config.envs
//     lists), stdout and stderr merged, SIGTERM on shutdown and SIGKILL one
//     second later.
//   - Gateway plays one APISIX worker: it sends PrepareConf with the route's
//     conf list and the key "route#<id>#<plugin>#<version>", caches the conf
//     token for 3600 s, sends HTTPReqCall (id, src_ip, method, path, args,
//     headers with lower-case names, conf token), answers ExtraInfo (Var,
//     ReqBody, RespBody) until the answer comes, and applies Stop or Rewrite
//     exactly as init.lua does. On CONF_TOKEN_NOT_FOUND it flushes its token
//     cache and tries again, three tries in all. Any other failure gives the
//     client 503, reported in Result rather than as a Go error.
//
// Frames are 1 type byte, a 3-byte big-endian length and a flatbuffers payload
// (github.com/api7/ext-plugin-proto v0.6.0); see WriteFrame and ReadFrame.
package apisix
