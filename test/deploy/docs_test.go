package deploy

import (
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every relative link in every Markdown file of the repository leads to a file
// that exists, and every #anchor to a heading of the file it names: moving a
// document or renaming a heading breaks the build, not the reader.
func TestMarkdownLinks(t *testing.T) {
	broken, err := brokenLinks(root(t))
	require.NoError(t, err)
	assert.Empty(t, broken)
}

// The checker itself finds what it is there to find.
func TestBrokenLinksFindsEachKind(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) {
		path := filepath.Join(dir, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	}
	write("docs/a.md", "# A\n\n## Process (environment)\n\n## Dup\n\n## Dup\n")
	write("code.go", "package x\n")
	write("README.md", strings.Join([]string{
		"# Top",
		"[ok](docs/a.md) [ok](docs/a.md#process-environment) [ok](docs/a.md#dup-1) [ok](#top) [ok](code.go)",
		"[ok](https://example.org/x.md#nowhere) [ok](mailto:a@example.org) `[not a link](nowhere.md)`",
		"```md",
		"[inside a fence](nowhere.md)",
		"```",
		"[missing file](docs/b.md)",
		"[missing anchor](docs/a.md#process)",
		"[missing local anchor](#bottom)",
		"[outside the repository](../elsewhere.md)",
	}, "\n"))
	broken, err := brokenLinks(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"README.md: docs/b.md: no such file",
		"README.md: docs/a.md#process: no heading with that anchor",
		"README.md: #bottom: no heading with that anchor",
		"README.md: ../elsewhere.md: outside the repository",
	}, broken)
}

// The README leads with two commands, the main job and the tests, and CI runs
// the README's test command, so what a newcomer runs is what CI runs.
func TestReadmeLeadsWithTheTestCommandCIRuns(t *testing.T) {
	block := fencedBlock.FindStringSubmatch(string(readFile(t, "README.md")))
	require.NotNil(t, block, "README.md has no fenced code block")
	require.Equal(t, "sh", block[1], "README.md's first code block is not the commands")
	var commands []string
	for _, line := range strings.Split(block[2], "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			commands = append(commands, line)
		}
	}
	require.Len(t, commands, 2, "README.md leads with the main job and the tests: %q", commands)
	var ci []string
	for _, line := range strings.Split(string(readFile(t, ".ci/run")), "\n") {
		ci = append(ci, strings.TrimSpace(line))
	}
	assert.Contains(t, ci, commands[1], ".ci/run does not run the README's test command")
}

// The README stays a front door: short, and a link to every document of docs/.
func TestReadmeLinksEveryDocument(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	assert.Less(t, len(readme), 10_000, "README.md has grown past a front door: move the detail into docs/")
	docs, err := filepath.Glob(repoPath(t, "docs/*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs)
	for _, d := range docs {
		assert.True(t, strings.Contains(readme, "](docs/"+filepath.Base(d)), "README.md does not link docs/%s", filepath.Base(d))
	}
}

var (
	// fencedBlock is a fenced code block and its info string.
	fencedBlock = regexp.MustCompile("(?ms)^```([^\\n`]*)\\n(.*?)^```")
	// fenceLine opens or closes a fenced code block.
	fenceLine = regexp.MustCompile("^\\s*(```|~~~)")
	// codeSpan is inline code, where brackets are no link.
	codeSpan = regexp.MustCompile("`+[^`]*`+")
	// inlineLink is [text](target) or [text](target "title"); the target
	// is group 1.
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// heading is an ATX heading; its text is group 1.
	heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	// htmlAnchor is an explicit anchor in HTML.
	htmlAnchor = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	// linkText keeps the text of a link inside a heading.
	linkText = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	// scheme marks an absolute URL (https:, mailto:), which is not checked.
	scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// brokenLinks checks every *.md under root (dot directories and
// node_modules left out) and returns one line per relative link that leads
// nowhere, in file order.
func brokenLinks(root string) ([]string, error) {
	var broken []string
	anchors := map[string][]string{} // file -> its anchors, read once
	anchorsOf := func(path string) ([]string, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		anchors[path] = markdownAnchors(string(b))
		return anchors[path], nil
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		for _, target := range markdownLinks(string(b)) {
			if scheme.MatchString(target) {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			dest := path
			if file != "" {
				unescaped, err := url.PathUnescape(file)
				if err != nil {
					broken = append(broken, fmt.Sprintf("%s: %s: %v", rel, target, err))
					continue
				}
				dest = filepath.Join(filepath.Dir(path), filepath.FromSlash(unescaped))
				if inside, _ := filepath.Rel(root, dest); inside == ".." || strings.HasPrefix(inside, ".."+string(filepath.Separator)) {
					broken = append(broken, fmt.Sprintf("%s: %s: outside the repository", rel, target))
					continue
				}
				if _, err := os.Stat(dest); err != nil {
					broken = append(broken, fmt.Sprintf("%s: %s: no such file", rel, target))
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			a, err := anchorsOf(dest)
			if err != nil {
				return err
			}
			if !slices.Contains(a, anchor) {
				broken = append(broken, fmt.Sprintf("%s: %s: no heading with that anchor", rel, target))
			}
		}
		return nil
	})
	return broken, err
}

// markdownLinks returns the targets of the inline links outside code.
func markdownLinks(doc string) []string {
	var targets []string
	for _, line := range proseLines(doc) {
		for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
			targets = append(targets, m[1])
		}
	}
	return targets
}

// markdownAnchors returns the anchors GitHub gives the headings of doc (a
// repeated heading gets -1, -2, ...) and the explicit HTML anchors.
func markdownAnchors(doc string) []string {
	var anchors []string
	seen := map[string]int{}
	for _, line := range proseLines(doc) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			anchors = append(anchors, m[1])
		}
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		slug := slugify(linkText.ReplaceAllString(m[1], "$1"))
		if n := seen[slug]; n > 0 {
			anchors = append(anchors, fmt.Sprintf("%s-%d", slug, n))
		} else {
			anchors = append(anchors, slug)
		}
		seen[slug]++
	}
	return anchors
}

// slugify makes a heading's anchor as GitHub does: lower case, spaces to
// hyphens, and every character but letters, digits, hyphens and underscores
// dropped.
func slugify(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// proseLines returns the lines of doc outside fenced code blocks.
func proseLines(doc string) []string {
	var lines []string
	var fence string
	for _, line := range strings.Split(doc, "\n") {
		if m := fenceLine.FindStringSubmatch(line); m != nil {
			switch fence {
			case "":
				fence = m[1]
			case m[1]:
				fence = ""
			}
			continue
		}
		if fence == "" {
			lines = append(lines, line)
		}
	}
	return lines
}
