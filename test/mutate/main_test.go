package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every entry of the shipped list still applies to today's code (its text
// occurs exactly once), so a refactor that moves a checked line fails here,
// in the ordinary unit tests, not only in a make mutate run.
func TestShippedListApplies(t *testing.T) {
	root, err := moduleRoot()
	require.NoError(t, err)
	ms, err := readList(filepath.Join(root, "test/mutate/mutations.txt"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(ms), 30)
	work := t.TempDir()
	for _, m := range ms {
		assert.NoError(t, prepare(root, work, m), m.ID)
		for _, p := range m.Pkgs {
			_, err := os.Stat(filepath.Join(root, p))
			assert.NoError(t, err, "%s: package %s", m.ID, p)
		}
	}
}

func TestListFormat(t *testing.T) {
	write := func(text string) string {
		p := filepath.Join(t.TempDir(), "list.txt")
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	ms, err := readList(write("# c\nid: a\nitem: r1\nfile: f.go\nfrom: x == y\nto:\ntest: ./p ./q\n\n\nid: b\nitem: 15.1\nfile: f.go\nfrom: z\nto: w\ntest: ./p\n"))
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.Equal(t, Mutation{ID: "a", Item: "r1", File: "f.go", From: "x == y", To: "", Pkgs: []string{"./p", "./q"}, Line: 2}, ms[0])
	assert.Equal(t, "w", ms[1].To)

	for name, text := range map[string]string{
		"no to":        "id: a\nitem: r1\nfile: f.go\nfrom: x\ntest: ./p\n",
		"no test":      "id: a\nitem: r1\nfile: f.go\nfrom: x\nto: y\n",
		"duplicate id": "id: a\nitem: r1\nfile: f.go\nfrom: x\nto: y\ntest: ./p\n\nid: a\nitem: r1\nfile: f.go\nfrom: z\nto: y\ntest: ./p\n",
		"unknown key":  "id: a\nitem: r1\nfile: f.go\nfrom: x\nto: y\ntest: ./p\nnote: hi\n",
		"no change":    "id: a\nitem: r1\nfile: f.go\nfrom: x\nto: x\ntest: ./p\n",
	} {
		_, err := readList(write(text))
		assert.Error(t, err, name)
	}
}

// A text found twice or not at all is an error, never a guess.
func TestPrepareWantsExactlyOneMatch(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "f.go"), []byte("a := 1\nb := 1\n"), 0o644))
	work := t.TempDir()
	err := prepare(root, work, Mutation{ID: "twice", File: "f.go", From: ":= 1", To: ":= 2"})
	assert.ErrorContains(t, err, "occurs 2 times")
	err = prepare(root, work, Mutation{ID: "none", File: "f.go", From: "c :=", To: "d :="})
	assert.ErrorContains(t, err, "occurs 0 times")

	require.NoError(t, prepare(root, work, Mutation{ID: "once", File: "f.go", From: "b := 1", To: "b := 2"}))
	mutated, err := os.ReadFile(filepath.Join(work, "once", "f.go"))
	require.NoError(t, err)
	assert.Equal(t, "a := 1\nb := 2\n", string(mutated))
	orig, err := os.ReadFile(filepath.Join(root, "f.go"))
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(orig), "b := 1"), "the original is untouched")
}
