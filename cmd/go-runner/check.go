package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/routecheck"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)

// Exit codes of `go-runner check`, for CI pipelines.
const (
	checkOK       = 0 // every route passed
	checkProblems = 1 // at least one problem was found
	checkUsage    = 2 // bad arguments, or a file could not be read or parsed
)

// checkParsers are the plugins' own conf parsers, by the name routes use:
// the check accepts exactly what the runner accepts.
func checkParsers() map[string]routecheck.Parser {
	return map[string]routecheck.Parser{
		userinfo.Name: confParser(userinfo.New(userinfo.Deps{}).ParseConf),
		orgsync.Name:  confParser(orgsync.New(orgsync.Deps{}).ParseConf),
	}
}

// confParser adapts a runner ParseConf: ours never fail there, they carry
// the error to answer the route with (Err), and say what a good conf
// accepts that deserves a look (Warnings).
func confParser(parse func([]byte) (any, error)) routecheck.Parser {
	return func(value []byte) ([]string, error) {
		c, err := parse(value)
		if err != nil {
			return nil, err
		}
		if e, ok := c.(interface{ Err() error }); ok && e.Err() != nil {
			return nil, e.Err()
		}
		if w, ok := c.(interface{ Warnings() []string }); ok {
			return w.Warnings(), nil
		}
		return nil, nil
	}
}

// checkSigns reads what assertion a userinfo conf signs, through userinfo's
// own parser (its defaults included).
func checkSigns(name string, value []byte) *routecheck.Signed {
	if name != userinfo.Name {
		return nil
	}
	v, err := userinfo.New(userinfo.Deps{}).ParseConf(value)
	if err != nil {
		return nil
	}
	c, ok := v.(*userinfo.Conf)
	if !ok {
		return nil
	}
	iss, aud, tokenIssuer, ok := c.SignedRealm()
	if !ok {
		return nil
	}
	return &routecheck.Signed{Issuer: iss, Audience: aud, TokenIssuer: tokenIssuer}
}

func checkUsageText(w io.Writer) {
	fmt.Fprint(w, `usage: go-runner check [-config config.yaml] FILE...

Checks APISIX route configs that use the runner's plugins. FILE is a route
(Admin API JSON), a list of routes, a standalone apisix.yaml, or an Admin API
dump (GET /apisix/admin/routes); "-" reads stdin. Every ext-plugin conf is
parsed by the plugin's own parser; names must be plugins the runner has (a
misspelled one is skipped silently at run time); identity plugins belong in
ext-plugin-post-req with allow_degradation false, userinfo before orgsync;
openid-connect without bearer_only needs session.secret (APISIX >= 3.14);
one assertion issuer and audience must not be signed on routes of two realms
(token issuers), across all FILEs; an orgsync access rule (require, tenant)
needs userinfo verifying the token before it on the same list, and a path
tenant cannot follow proxy-rewrite's uri or regex_uri. With -config (APISIX's config.yaml), every secret_env must be listed in
nginx_config.envs. ${{VAR:=default}} references resolve from this
environment, as APISIX resolves them.

Warnings are printed too ("ROUTE: warning: ..."), one per line, and do
not fail the check: a userinfo route with "any_audience": true accepts a
token issued to any client of its realm.

Exit status: 0 no problem (warnings possible), 1 problems found (one per
line on stdout), 2 usage error or unreadable file.
`)
}

// runCheck is `go-runner check ARGS`.
func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// The plugins' parsers log what the runner logs ("route config refused"):
	// the check reports those itself, one a line, and its output is only that.
	defer quietLogs()()
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { checkUsageText(stderr) }
	configFile := fs.String("config", "", "APISIX config.yaml: check secret_env against nginx_config.envs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return checkOK
		}
		return checkUsage
	}
	if fs.NArg() == 0 {
		checkUsageText(stderr)
		return checkUsage
	}
	opts := routecheck.Options{
		Parsers: checkParsers(),
		Order:   []string{userinfo.Name, orgsync.Name},
		// orgsync's invalidation endpoint works without an identity.
		Exempt: func(name string, v map[string]any) bool { return name == orgsync.Name && v["invalidate"] == true },
		Signs:  checkSigns,
		Gates: func(name string, value []byte) bool {
			if name != orgsync.Name {
				return false
			}
			v, err := orgsync.New(orgsync.Deps{}).ParseConf(value)
			c, ok := v.(*orgsync.Conf)
			return err == nil && ok && c.Gates()
		},
		RawPath: func(name string, value []byte) bool {
			if name != orgsync.Name {
				return false
			}
			v, err := orgsync.New(orgsync.Deps{}).ParseConf(value)
			c, ok := v.(*orgsync.Conf)
			return err == nil && ok && c.Gates() && c.Tenant != nil && c.Tenant.Path != ""
		},
		Verifies: func(name string, value []byte) bool {
			if name != userinfo.Name {
				return false
			}
			v, err := userinfo.New(userinfo.Deps{}).ParseConf(value)
			c, ok := v.(*userinfo.Conf)
			return err == nil && ok && c.Err() == nil && c.VerifyToken != nil && *c.VerifyToken
		},
	}
	if *configFile != "" {
		doc, err := readDoc(*configFile, stdin)
		if err == nil {
			opts.Envs, err = routecheck.Envs(doc)
		}
		if err != nil {
			fmt.Fprintf(stderr, "go-runner check: -config %s: %v\n", *configFile, err)
			return checkUsage
		}
	}
	code, problems, warnings := checkOK, 0, 0
	// All files are checked as one config: the realm rule spans them.
	var all []routecheck.Route
	for _, file := range fs.Args() {
		doc, err := readDoc(file, stdin)
		if err == nil {
			doc, err = routecheck.ExpandVars(doc, os.Getenv)
		}
		var rs []routecheck.Route
		if err == nil {
			rs, err = routecheck.Load(doc)
		}
		if err != nil {
			fmt.Fprintf(stderr, "go-runner check: %s: %v\n", file, err)
			code = checkUsage
			continue
		}
		for i := range rs {
			rs[i].File = file
		}
		all = append(all, rs...)
	}
	for _, p := range routecheck.Check(all, opts) {
		fmt.Fprintf(stdout, "%s: %s\n", p.File, p)
		if p.Warning {
			warnings++
		} else {
			problems++
		}
	}
	if problems > 0 && code == checkOK {
		code = checkProblems
	}
	if s := checkSummary(code, problems, warnings, len(all)); s != "" {
		fmt.Fprintln(stderr, "go-runner check: "+s)
	}
	return code
}

// checkSummary is the check's last line: "3 routes, no problem, 1 warning",
// "1 problem in 1 route"; "" after a usage error with no problem found.
func checkSummary(code, problems, warnings, routes int) string {
	switch {
	case code == checkOK:
		return fmt.Sprintf("%s, no problem, %s", plural(routes, "route"), plural(warnings, "warning"))
	case problems == 0:
		return ""
	case warnings == 0:
		return fmt.Sprintf("%s in %s", plural(problems, "problem"), plural(routes, "route"))
	}
	return fmt.Sprintf("%s and %s in %s", plural(problems, "problem"), plural(warnings, "warning"), plural(routes, "route"))
}

// plural is "1 route", "2 routes", "0 routes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// quietLogs sends slog's default logger nowhere until the returned func.
func quietLogs() func() {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	return func() { slog.SetDefault(prev) }
}

func readDoc(file string, stdin io.Reader) (any, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	return routecheck.Decode(b)
}
