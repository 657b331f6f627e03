// Package routecheck checks APISIX route configs that use the runner's
// plugins for the mistakes APISIX and the runner library accept silently or
// refuse only at deploy time: a misspelled plugin name (the library skips it
// and the request goes on unchecked), a conf that does not parse, identity
// plugins in the wrong phase, allow_degradation, orgsync before userinfo, a
// secret_env nginx never passes on, an openid-connect login without a
// session secret (APISIX >= 3.14 refuses it), and one assertion issuer and
// audience signed on routes of different realms. It also passes on the
// warnings a plugin gives about a good conf (a userinfo route that accepts a
// token of any client of the realm), which are findings but not problems.
//
// It knows the rules, not the plugins: callers hand it each plugin's own
// parser, so the check can never disagree with what the runner accepts.
package routecheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// The ext-plugin phases of APISIX, and where identity plugins belong:
// ext-plugin-pre-req (priority 12000) runs before openid-connect (2599) and
// so before the login; ext-plugin-post-req (-3000) runs after it.
const (
	PreReq   = "ext-plugin-pre-req"
	PostReq  = "ext-plugin-post-req"
	PostResp = "ext-plugin-post-resp"
)

var phases = []string{PreReq, PostReq, PostResp}

// minSessionSecret is the minLength of openid-connect's session.secret.
const minSessionSecret = 16

// Route is one object of an APISIX config that carries plugins: a route, a
// service, a plugin config or a global rule.
type Route struct {
	ID      string
	Plugins map[string]any
	// File is where the route was read, when the caller checks several
	// files at once; Problems carry it.
	File string
}

// Problem is one finding, tied to the route it was found on.
type Problem struct {
	Route   string
	Message string
	File    string
	// Warning marks a finding on a conf the runner accepts as it is: worth a
	// look, not a reason to fail.
	Warning bool
}

func (p Problem) String() string {
	if p.Warning {
		return p.Route + ": warning: " + p.Message
	}
	return p.Route + ": " + p.Message
}

// Parser parses one plugin conf value and returns the error the runner would
// answer the route with (nil when the conf is good) and, for a good conf,
// the plugin's warnings about what the route accepts.
type Parser func(value []byte) (warnings []string, err error)

// Options say what the runner has and what reaches it.
type Options struct {
	// Parsers are the runner's plugins by the name routes use.
	Parsers map[string]Parser
	// Envs is nginx_config.envs of APISIX's config.yaml; nil when unknown
	// (the secret_env rule is then skipped).
	Envs []string
	// Order lists plugin names that must come in this order on one list
	// when both are present (userinfo before orgsync).
	Order []string
	// Exempt says whether a conf is exempt from the Order rule (orgsync's
	// invalidation endpoint runs alone).
	Exempt func(name string, value map[string]any) bool
	// Signs says what identity assertion a good conf of the named plugin
	// signs, nil when none (or when the conf does not parse: that is
	// reported already). nil skips the realm rule.
	Signs func(name string, value []byte) *Signed
	// Gates says whether a good conf of the named plugin decides who passes
	// (an access rule); Verifies whether it verifies the identity such a
	// rule is decided for. A gating conf with no verifying one before it on
	// its list is a problem. nil skips the rule.
	Gates, Verifies func(name string, value []byte) bool
	// RawPath says whether a good conf reads the client's raw request-target
	// and compares it with the path the runner gets (orgsync's path tenant),
	// which a uri rewrite before it makes differ on every request. nil skips
	// the rule.
	RawPath func(name string, value []byte) bool
}

// Signed is what an app verifying an assertion can check: the iss and aud
// it expects, and the realm of the subject (token_iss).
type Signed struct {
	Issuer, Audience string
	// TokenIssuer is the realm the route verifies tokens of; "" when it
	// verifies none (userinfo's verify_token false).
	TokenIssuer string
}

// Check returns every problem found on routes, in route order.
func Check(routes []Route, o Options) []Problem {
	var out []Problem
	for _, r := range routes {
		f := findings{add: func(p Problem) { p.Route, p.File = r.ID, r.File; out = append(out, p) }}
		checkOpenIDConnect(r, f.problem)
		checkRawPath(r, o, f.problem)
		for _, phase := range phases {
			raw, ok := r.Plugins[phase]
			if !ok {
				continue
			}
			checkExtPlugin(phase, raw, o, f)
		}
	}
	if o.Signs != nil {
		out = append(out, checkRealms(routes, o.Signs)...)
	}
	return out
}

// checkRealms refuses one assertion iss and aud signed on routes of
// different realms. A Keycloak user id is unique only within its realm, and
// iss and aud say nothing about the realm, so an app that receives both
// routes' assertions and checks what every verifier checks (iss, aud) takes
// a user of one realm for the user of the other with the same id. The
// assertion's token_iss tells them apart, but only for an app that sets the
// expected realm, and such an app refuses every user of the other realm:
// either way the pair is a mistake, and the fix is always at hand (one
// assertion.audience per realm). So it is an error, not a warning.
func checkRealms(routes []Route, signs func(string, []byte) *Signed) []Problem {
	type first struct {
		route, file, realm string
	}
	seen := map[[2]string][]first{}
	var out []Problem
	for _, r := range routes {
		for _, phase := range phases {
			for i, c := range confList(r.Plugins[phase]) {
				name, _ := c["name"].(string)
				value, _ := c["value"].(string)
				s := signs(name, []byte(value))
				if s == nil {
					continue
				}
				key := [2]string{s.Issuer, s.Audience}
				prior := seen[key]
				for _, p := range prior {
					if p.realm == s.TokenIssuer {
						continue
					}
					where := p.route
					if p.file != r.File {
						where = p.file + ": " + where
					}
					out = append(out, Problem{Route: r.ID, File: r.File, Message: fmt.Sprintf(
						"%s conf[%d]: %s: assertion iss %q aud %q is also signed on %s for users of %s; here for users of %s: "+
							"an app that checks iss and aud takes a user of one realm for the user of the other with the same id; "+
							"give each realm its own assertion.audience",
						phase, i, name, s.Issuer, s.Audience, where, realmName(p.realm), realmName(s.TokenIssuer))})
					break
				}
				seen[key] = append(prior, first{route: r.ID, file: r.File, realm: s.TokenIssuer})
			}
		}
	}
	return out
}

func realmName(tokenIssuer string) string {
	if tokenIssuer == "" {
		return "no verified token (verify_token false)"
	}
	return fmt.Sprintf("%q", tokenIssuer)
}

// confList is the conf list of an ext-plugin phase, the entries that are
// objects only.
func confList(raw any) []map[string]any {
	m, _ := raw.(map[string]any)
	list, _ := m["conf"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, item := range list {
		if c, ok := item.(map[string]any); ok {
			out = append(out, c)
		}
	}
	return out
}

// findings collects what one route's checks find.
type findings struct{ add func(Problem) }

func (f findings) problem(format string, args ...any) {
	f.add(Problem{Message: fmt.Sprintf(format, args...)})
}

func (f findings) warning(format string, args ...any) {
	f.add(Problem{Message: fmt.Sprintf(format, args...), Warning: true})
}

// checkRawPath: proxy-rewrite's uri or regex_uri sets $upstream_uri in the
// rewrite phase, and ext-plugin sends that as the path; the client's
// request-target ($real_request_uri) then never matches it, and a conf that
// compares the two refuses every request.
func checkRawPath(r Route, o Options, add func(string, ...any)) {
	pr, _ := r.Plugins["proxy-rewrite"].(map[string]any)
	if o.RawPath == nil || pr == nil || (pr["uri"] == nil && pr["regex_uri"] == nil) {
		return
	}
	m, _ := r.Plugins[PostReq].(map[string]any)
	list, _ := m["conf"].([]any)
	for i, item := range list {
		c, _ := item.(map[string]any)
		name, _ := c["name"].(string)
		value, _ := c["value"].(string)
		if o.RawPath(name, []byte(value)) {
			add("%s conf[%d]: %s: a path tenant cannot follow proxy-rewrite's uri or regex_uri: the path the runner "+
				"gets is no longer the client's, and every request is refused; use a header tenant the same rewrite sets",
				PostReq, i, name)
		}
	}
}

// checkOpenIDConnect: APISIX 3.14 made session.secret required whenever
// bearer_only is false (apisix/plugins/openid-connect.lua, check_schema:
// `property "session.secret" is required when "bearer_only" is false`);
// before, it made one up per worker, so sessions broke across workers and
// restarts. The schema wants 16 characters or more.
func checkOpenIDConnect(r Route, add func(string, ...any)) {
	raw, ok := r.Plugins["openid-connect"]
	if !ok {
		return
	}
	oidc, _ := raw.(map[string]any)
	if oidc == nil {
		add("openid-connect: want an object")
		return
	}
	if b, _ := oidc["bearer_only"].(bool); b {
		return
	}
	session, _ := oidc["session"].(map[string]any)
	secret, _ := session["secret"].(string)
	switch {
	case secret == "":
		add(`openid-connect: "session.secret" is required when "bearer_only" is false (APISIX >= 3.14 refuses the route)`)
	case len(secret) < minSessionSecret:
		add(`openid-connect: "session.secret" must be at least %d characters`, minSessionSecret)
	}
}

func checkExtPlugin(phase string, raw any, o Options, f findings) {
	add := f.problem
	m, _ := raw.(map[string]any)
	if m == nil {
		add("%s: want an object", phase)
		return
	}
	list, _ := m["conf"].([]any)
	if len(list) == 0 {
		add("%s: no conf: the plugin runs nothing", phase)
		return
	}
	var names []string
	values := map[string]map[string]any{}
	ours, unknown, verified := false, false, false
	for i, item := range list {
		c, _ := item.(map[string]any)
		name, _ := c["name"].(string)
		names = append(names, name)
		where := fmt.Sprintf("%s conf[%d]", phase, i)
		parse, known := o.Parsers[name]
		if !known {
			add("%s: the runner has no plugin %q (it would skip it silently and let the request through); it has %s",
				where, name, strings.Join(sortedKeys(o.Parsers), ", "))
			unknown = true
			continue
		}
		ours = true
		if phase != PostReq {
			add("%s: %s belongs in %s, which runs after openid-connect; %s sees no login", where, name, PostReq, phase)
		}
		value, isString := c["value"].(string)
		if !isString {
			add(`%s: %s: "value" must be the plugin's JSON config as a string`, where, name)
			continue
		}
		var v map[string]any
		_ = json.Unmarshal([]byte(value), &v)
		values[name] = v
		warnings, err := parseWithSecret(parse, value, v, o.Envs, func(format string, args ...any) {
			add(where+": "+name+": "+format, args...)
		})
		// A conf's problems joined (errors.Join) are reported one a line.
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add("%s: %v", where, e)
			}
		} else if err != nil {
			add("%s: %v", where, err)
		}
		if err == nil && o.Gates != nil && o.Gates(name, []byte(value)) && !verified {
			add("%s: %s: an access rule needs a plugin before it on the same list that verifies the identity "+
				"(userinfo with verify_token true): without one it is decided for nobody", where, name)
		}
		if err == nil && o.Verifies != nil && o.Verifies(name, []byte(value)) {
			verified = true
		}
		for _, w := range warnings {
			f.warning("%s: %s: %s", where, name, w)
		}
	}
	if ours {
		if d, _ := m["allow_degradation"].(bool); d {
			add("%s: allow_degradation is true: when the runner is down requests pass unchecked", phase)
		}
	}
	// A name the runner does not have is likely the misspelling of one
	// that the order is about: reported above, it is not reported again
	// as a plugin missing before another.
	if len(o.Order) > 1 && !unknown {
		checkOrder(phase, names, values, o, add)
	}
}

// parseWithSecret parses a conf. A secret_env variable this process lacks is
// set to a placeholder while it parses: the check is about the route, and
// whether the variable reaches the runner is what nginx_config.envs says.
func parseWithSecret(parse Parser, value string, v map[string]any, envs []string, add func(string, ...any)) ([]string, error) {
	name, _ := v["secret_env"].(string)
	if name == "" {
		return parse([]byte(value))
	}
	if envs != nil && !slices.Contains(envs, name) {
		add("secret_env %s is not listed in nginx_config.envs: the runner never sees it", name)
	}
	if _, set := os.LookupEnv(name); !set {
		if err := os.Setenv(name, placeholderSecret); err == nil {
			defer os.Unsetenv(name)
		}
	}
	return parse([]byte(value))
}

func checkOrder(phase string, names []string, values map[string]map[string]any, o Options, add func(string, ...any)) {
	for i := 1; i < len(o.Order); i++ {
		before, after := o.Order[i-1], o.Order[i]
		j := slices.Index(names, after)
		if j < 0 || (o.Exempt != nil && o.Exempt(after, values[after])) {
			continue
		}
		if k := slices.Index(names, before); k < 0 || k > j {
			add("%s: %s must follow %s on the same list (it works on the identity %s verified), got %v",
				phase, after, before, before, names)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Load reads the routes out of a config document, JSON or YAML, decoded by
// the caller into plain maps and slices. It understands one route (Admin API
// form), a list of routes, a standalone apisix.yaml (routes, services,
// plugin_configs, global_rules) and an Admin API dump (GET
// /apisix/admin/routes: {"list": [{"key", "value"}]}; APISIX 2's
// {"node": {"nodes": [...]}} too).
func Load(doc any) ([]Route, error) {
	switch d := doc.(type) {
	case []any:
		return routesOf("route", d)
	case map[string]any:
		if _, ok := d["plugins"]; ok {
			return []Route{route("route", 0, d)}, nil
		}
		var out []Route
		found := false
		for _, kind := range []string{"routes", "services", "plugin_configs", "global_rules"} {
			list, ok := d[kind].([]any)
			if !ok {
				continue
			}
			found = true
			rs, err := routesOf(strings.TrimSuffix(kind, "s"), list)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
		}
		if list, ok := d["list"].([]any); ok { // APISIX 3 Admin API list
			found = true
			rs, err := routesOf("route", list)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
		}
		if node, ok := d["node"].(map[string]any); ok { // APISIX 2 Admin API
			found = true
			if nodes, ok := node["nodes"].([]any); ok {
				rs, err := routesOf("route", nodes)
				if err != nil {
					return nil, err
				}
				out = append(out, rs...)
			} else {
				return Load(node)
			}
		}
		if v, ok := d["value"].(map[string]any); ok && !found { // one Admin API item
			return []Route{route("route", 0, v)}, nil
		}
		if !found {
			return nil, errors.New("no routes: want a route, a list of routes, apisix.yaml or an Admin API dump")
		}
		return out, nil
	}
	return nil, fmt.Errorf("no routes: the document is a %T", doc)
}

func routesOf(kind string, list []any) ([]Route, error) {
	out := make([]Route, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s #%d: want an object, got %T", kind, i+1, item)
		}
		if v, ok := m["value"].(map[string]any); ok { // Admin API item {key, value}
			if _, ok := v["id"]; !ok {
				if key, _ := m["key"].(string); key != "" {
					v = withID(v, key[strings.LastIndex(key, "/")+1:])
				}
			}
			m = v
		}
		out = append(out, route(kind, i, m))
	}
	return out, nil
}

func withID(m map[string]any, id string) map[string]any {
	c := make(map[string]any, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	c["id"] = id
	return c
}

func route(kind string, i int, m map[string]any) Route {
	id := fmt.Sprintf("%s #%d", kind, i+1)
	if v, ok := m["id"]; ok && v != nil {
		id = fmt.Sprintf("%s %v", kind, v)
	} else if u, _ := m["uri"].(string); u != "" {
		id = fmt.Sprintf("%s #%d (%s)", kind, i+1, u)
	}
	plugins, _ := m["plugins"].(map[string]any)
	return Route{ID: id, Plugins: plugins}
}

// Envs reads nginx_config.envs from APISIX's config.yaml, decoded by the caller.
func Envs(doc any) ([]string, error) {
	m, _ := doc.(map[string]any)
	nginx, _ := m["nginx_config"].(map[string]any)
	if nginx == nil {
		return []string{}, nil
	}
	list, ok := nginx["envs"].([]any)
	if !ok && nginx["envs"] != nil {
		return nil, errors.New("nginx_config.envs: want a list")
	}
	out := []string{}
	for _, v := range list {
		s, _ := v.(string)
		// nginx's env directive also takes NAME=value.
		name, _, _ := strings.Cut(s, "=")
		out = append(out, name)
	}
	return out, nil
}

// Decode reads a JSON or YAML document (YAML is a superset of JSON) into the
// plain maps and slices Load and Envs take.
//
// A document that starts as JSON does ('{' or '[') is a JSON document (an
// Admin API route or dump): it must parse as JSON, and its syntax errors are
// the JSON parser's, with line and column (YAML's message about a JSON file
// misleads, and YAML accepts some text APISIX's JSON parser refuses).
func Decode(data []byte) (any, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, jsonError(data, err)
		}
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// jsonError places a JSON syntax error at its line and column.
func jsonError(data []byte, err error) error {
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) {
		return fmt.Errorf("JSON: %w", err)
	}
	// Offset counts the offending byte.
	before := data[:min(max(int(syntax.Offset)-1, 0), len(data))]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Errorf("JSON: line %d, column %d: %w", line, col, err)
}

// apisixVar is APISIX's ${{NAME}} / ${{NAME:=default}} reference, which it
// resolves from the environment when it loads config.yaml or a standalone
// apisix.yaml (apisix/cli/file.lua, resolve_conf_var).
var apisixVar = regexp.MustCompile(`\$\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::=\s*(.*?))?\s*\}\}`)

// ExpandVars resolves APISIX's ${{NAME:=default}} references in the string
// values of a decoded document, as APISIX does after parsing the YAML: from
// getenv, else the default. A reference to an unset variable without a
// default is an error, as it is for APISIX.
func ExpandVars(doc any, getenv func(string) string) (any, error) {
	var missing []string
	var walk func(v any) any
	walk = func(v any) any {
		switch t := v.(type) {
		case string:
			return apisixVar.ReplaceAllStringFunc(t, func(m string) string {
				sub := apisixVar.FindStringSubmatch(m)
				if v := getenv(sub[1]); v != "" {
					return v
				}
				if strings.Contains(m, ":=") {
					return sub[2]
				}
				missing = append(missing, sub[1])
				return m
			})
		case map[string]any:
			out := make(map[string]any, len(t))
			for k, e := range t {
				out[k] = walk(e)
			}
			return out
		case []any:
			out := make([]any, len(t))
			for i, e := range t {
				out[i] = walk(e)
			}
			return out
		}
		return v
	}
	out := walk(doc)
	if len(missing) > 0 {
		return nil, fmt.Errorf("${{%s}}: the variable is not set and has no default", strings.Join(missing, "}}, ${{"))
	}
	return out, nil
}

// VarNames lists the variables the string values of a decoded document
// refer to with ${{NAME}}.
func VarNames(doc any) []string {
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case string:
			for _, m := range apisixVar.FindAllStringSubmatch(t, -1) {
				if !slices.Contains(names, m[1]) {
					names = append(names, m[1])
				}
			}
		case map[string]any:
			for _, k := range sortedKeys(t) {
				walk(t[k])
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(doc)
	return names
}

// placeholderSecret stands for a secret the check does not know: long and
// varied enough to pass the runner's checks of a real one (conf.Secret).
const placeholderSecret = "routecheck-placeholder-0123456789abcdef"
