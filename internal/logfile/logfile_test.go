package logfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReopenFollowsARotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runner.log")
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write([]byte("one\n"))
	require.NoError(t, err)

	require.NoError(t, os.Rename(path, path+".1")) // logrotate's rename
	_, err = f.Write([]byte("two\n"))
	require.NoError(t, err, "before the reopen, lines still go to the renamed file")
	require.NoError(t, f.Reopen())
	_, err = f.Write([]byte("three\n"))
	require.NoError(t, err)

	rotated, err := os.ReadFile(path + ".1")
	require.NoError(t, err)
	assert.Equal(t, "one\ntwo\n", string(rotated))
	current, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "three\n", string(current))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "logs may name users: not world-readable")
}

func TestReopenFailureKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "runner.log")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "sub")))
	require.Error(t, f.Reopen(), "the directory is gone")
	_, err = f.Write([]byte("still writable\n"))
	assert.NoError(t, err)
}

func TestOpenNamesTheProblem(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing", "runner.log"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing")
}

func TestWriteAfterClose(t *testing.T) {
	f, err := Open(filepath.Join(t.TempDir(), "runner.log"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = f.Write([]byte("x"))
	assert.ErrorIs(t, err, os.ErrClosed)
}
