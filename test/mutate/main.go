// Command mutate checks that the unit tests of the security checks bite: it
// applies each mutation of a fixed list (a check removed, a comparison
// inverted, a header left off a strip list, a field left out of a cache key)
// and runs the unit tests of the packages that must notice. A mutation the
// tests do not notice "survives", and then the command fails: some check could
// go wrong with nothing to say so.
//
// The checkout is never changed: each mutated file is handed to the go
// command through -overlay, so an interrupted run leaves nothing behind and
// two mutations can be tested at once.
//
//	go run ./test/mutate [-list test/mutate/mutations.txt] [-j 2] [-run REGEXP] [-timeout 4m]
//
// The list's format is in test/mutate/README.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// Mutation is one entry of the list.
type Mutation struct {
	ID   string
	Item string // the issue item or earlier check it covers
	File string // relative to the module root
	From string // must occur exactly once in File
	To   string
	Pkgs []string // packages whose unit tests must catch it
	Line int      // of the entry in the list, for messages
}

// Outcomes of a mutation.
const (
	Killed   = "killed"
	Survived = "survived"
	Broken   = "broken"    // does not apply or does not compile: it tests nothing
	TimedOut = "timed out" // counted as killed: the tests noticed something
	Skipped  = "skipped"   // interrupted before it ran
)

type result struct {
	m       Mutation
	outcome string
	detail  string
	took    time.Duration
}

func main() { os.Exit(run()) }

// run returns the exit code, so that the deferred clean-up runs first.
func run() int {
	list := flag.String("list", "test/mutate/mutations.txt", "the mutation list")
	jobs := flag.Int("j", 2, "mutations tested at once")
	run := flag.String("run", "", "test only the mutations whose id matches this regexp")
	timeout := flag.Duration("timeout", 4*time.Minute, "go test -timeout for one mutation's packages")
	verbose := flag.Bool("v", false, "print the test output of survivors and broken mutations")
	flag.Parse()

	root, err := moduleRoot()
	if err != nil {
		return fail(err)
	}
	ms, err := readList(filepath.Join(root, *list))
	if err == nil && *run != "" {
		var re *regexp.Regexp
		if re, err = regexp.Compile(*run); err == nil {
			ms = slices.DeleteFunc(ms, func(m Mutation) bool { return !re.MatchString(m.ID) })
		}
	}
	if err != nil {
		return fail(err)
	}
	if len(ms) == 0 {
		return fail(errors.New("no mutation selected"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(work)

	start := time.Now()
	// Every mutation is checked before any test runs: a list that no longer
	// matches the code is reported at once, not after minutes of testing.
	var results []result
	var runnable []Mutation
	for _, m := range ms {
		if err := prepare(root, work, m); err != nil {
			results = append(results, result{m: m, outcome: Broken, detail: err.Error()})
			continue
		}
		runnable = append(runnable, m)
	}

	// Unmutated, the tests must pass, or every mutation would look killed.
	var pkgs []string
	for _, m := range runnable {
		for _, p := range m.Pkgs {
			if !slices.Contains(pkgs, p) {
				pkgs = append(pkgs, p)
			}
		}
	}
	if len(pkgs) > 0 {
		fmt.Fprintf(os.Stderr, "mutate: baseline: go test %s\n", strings.Join(pkgs, " "))
		out, err := goTest(ctx, root, "", *timeout, pkgs)
		if err != nil {
			os.Stderr.Write(out)
			return fail(fmt.Errorf("the unit tests fail without any mutation (%v): fix them first", err))
		}
	}

	fmt.Fprintf(os.Stderr, "mutate: %d mutations, %d at a time\n", len(runnable), *jobs)
	todo := make(chan Mutation)
	done := make(chan result)
	var wg sync.WaitGroup
	for range max(*jobs, 1) {
		wg.Go(func() {
			for m := range todo {
				done <- test(ctx, root, work, m, *timeout)
			}
		})
	}
	go func() {
		defer close(todo)
		for _, m := range runnable {
			select {
			case todo <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(done) }()
	for r := range done {
		fmt.Fprintf(os.Stderr, "mutate: %-40s %-9s %5.1fs\n", r.m.ID, r.outcome, r.took.Seconds())
		if *verbose && (r.outcome == Survived || r.outcome == Broken) {
			fmt.Fprintln(os.Stderr, r.detail)
		}
		results = append(results, r)
	}
	for _, m := range runnable {
		if !slices.ContainsFunc(results, func(r result) bool { return r.m.ID == m.ID }) {
			results = append(results, result{m: m, outcome: Skipped})
		}
	}
	slices.SortStableFunc(results, func(a, b result) int { return a.m.Line - b.m.Line })
	if !report(results, time.Since(start)) || ctx.Err() != nil {
		return 1
	}
	return 0
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	return 2
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// readList parses the list: blocks of "key: value" lines separated by blank
// lines, "#" starting a comment line. A value is the rest of its line, spaces
// around it removed.
func readList(path string) ([]Mutation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mutation
	var cur *Mutation
	seen := map[string]bool{}
	flush := func() error {
		if cur == nil {
			return nil
		}
		m := *cur
		cur = nil
		switch {
		case m.ID == "" || m.File == "" || m.From == "" || len(m.Pkgs) == 0 || m.Item == "":
			return fmt.Errorf("%s:%d: a mutation needs id, item, file, from, to and test", path, m.Line)
		case seen[m.ID]:
			return fmt.Errorf("%s:%d: id %q used twice", path, m.Line, m.ID)
		case m.From == m.To:
			return fmt.Errorf("%s:%d: %s changes nothing", path, m.Line, m.ID)
		}
		seen[m.ID] = true
		out = append(out, m)
		return nil
	}
	sc := bufio.NewScanner(f)
	line := 0
	hasTo := false
	for sc.Scan() {
		line++
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if trimmed == "" {
			if cur != nil && !hasTo {
				return nil, fmt.Errorf("%s:%d: %s has no \"to:\" line (write \"to:\" alone to delete)", path, cur.Line, cur.ID)
			}
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		key, value, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want \"key: value\"", path, line)
		}
		value = strings.TrimSpace(value)
		if cur == nil {
			cur = &Mutation{Line: line}
			hasTo = false
		}
		switch strings.TrimSpace(key) {
		case "id":
			cur.ID = value
		case "item":
			cur.Item = value
		case "file":
			cur.File = value
		case "from":
			cur.From = value
		case "to":
			cur.To, hasTo = value, true
		case "test":
			cur.Pkgs = strings.Fields(value)
		default:
			return nil, fmt.Errorf("%s:%d: unknown key %q", path, line, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil && !hasTo {
		return nil, fmt.Errorf("%s:%d: %s has no \"to:\" line", path, cur.Line, cur.ID)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// prepare writes the mutated file and the overlay that puts it in place of
// the original, under work/<id>/.
func prepare(root, work string, m Mutation) error {
	src := filepath.Join(root, m.File)
	orig, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if n := strings.Count(string(orig), m.From); n != 1 {
		return fmt.Errorf("%s: %q occurs %d times, want exactly once: update the list", m.File, m.From, n)
	}
	dir := filepath.Join(work, m.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mutated := filepath.Join(dir, filepath.Base(m.File))
	if err := os.WriteFile(mutated, []byte(strings.Replace(string(orig), m.From, m.To, 1)), 0o644); err != nil {
		return err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {src: mutated}})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "overlay.json"), overlay, 0o644)
}

func test(ctx context.Context, root, work string, m Mutation, timeout time.Duration) result {
	start := time.Now()
	out, err := goTest(ctx, root, filepath.Join(work, m.ID, "overlay.json"), timeout, m.Pkgs)
	r := result{m: m, took: time.Since(start), detail: string(out)}
	switch {
	case ctx.Err() != nil:
		r.outcome = Skipped
	case err == nil:
		r.outcome = Survived
	case buildFailed(out):
		// A mutation that does not compile tells nothing about the tests.
		r.outcome = Broken
	case strings.Contains(string(out), "panic: test timed out"):
		r.outcome = TimedOut
	default:
		r.outcome = Killed
		r.detail = firstFailure(out)
	}
	return r
}

var buildFailure = regexp.MustCompile(`(?m)\[(build|setup) failed\]$`)

func buildFailed(out []byte) bool { return buildFailure.Match(out) }

// compileError is the first line naming a source position, or the first line.
func compileError(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if strings.Contains(l, ".go:") {
			return strings.TrimSpace(l)
		}
	}
	return lines[0]
}

// firstFailure is the first failing test's name, as the table's detail.
func firstFailure(out []byte) string {
	for line := range strings.SplitSeq(string(out), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "--- FAIL: "); ok {
			return name
		}
	}
	return ""
}

// goTest runs the packages' unit tests (no -race: speed), with the overlay
// when there is one. The tests' own vet run is off: a mutation is judged by
// the tests, and vet would call some mutations broken for style.
func goTest(ctx context.Context, root, overlay string, timeout time.Duration, pkgs []string) ([]byte, error) {
	args := []string{"test", "-count=1", "-failfast", "-vet=off", "-timeout", timeout.String()}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	// The go command and its test binaries die with the run on Ctrl-C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// report prints the table and says whether every mutation was killed.
func report(results []result, took time.Duration) bool {
	counts := map[string]int{}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tITEM\tRESULT\tTIME\tCAUGHT BY / WHY")
	for _, r := range results {
		counts[r.outcome]++
		detail := r.detail
		if r.outcome == Survived {
			detail = "no test failed: " + strings.Join(r.m.Pkgs, " ")
		}
		if r.outcome == Broken {
			detail = compileError(detail)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\t%s\n", r.m.ID, r.m.Item, r.outcome, r.took.Seconds(), detail)
	}
	_ = tw.Flush()
	caught := counts[Killed] + counts[TimedOut]
	fmt.Printf("\n%d mutations: %d killed, %d survived, %d broken, %d skipped; %s\n",
		len(results), caught, counts[Survived], counts[Broken], counts[Skipped], took.Round(time.Second))
	return caught == len(results)
}
