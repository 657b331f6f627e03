package apisix

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestWriteFrameLayout(t *testing.T) {
	var buf bytes.Buffer
	payload := bytes.Repeat([]byte{0xab}, 0x012345)
	if err := WriteFrame(&buf, TypeHTTPReqCall, payload); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	if want := []byte{2, 0x01, 0x23, 0x45}; !bytes.Equal(got[:4], want) {
		t.Fatalf("header = % x, want % x", got[:4], want)
	}
	if !bytes.Equal(got[4:], payload) {
		t.Fatal("payload changed")
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ty      byte
		payload []byte
	}{
		{"empty", TypeError, nil},
		{"prepare", TypePrepareConf, []byte("conf")},
		{"extra info", TypeExtraInfo, bytes.Repeat([]byte("x"), 70000)},
		{"max", TypeHTTPRespCall, make([]byte, MaxPayload)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, tc.ty, tc.payload); err != nil {
				t.Fatal(err)
			}
			ty, p, err := ReadFrame(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if ty != tc.ty || len(p) != len(tc.payload) || !bytes.Equal(p, tc.payload) {
				t.Fatalf("got type %d, %d bytes", ty, len(p))
			}
			if _, _, err := ReadFrame(&buf); !errors.Is(err, io.EOF) {
				t.Fatalf("after last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	err := WriteFrame(io.Discard, TypeHTTPReqCall, make([]byte, MaxPayload+1))
	if !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("err = %v, want ErrPayloadTooLarge", err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"short header", []byte{2, 0}},
		{"short payload", []byte{2, 0, 0, 5, 'a', 'b'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tc.raw))
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
			}
			if !strings.HasPrefix(err.Error(), "apisix: ") {
				t.Fatalf("err %q lacks the component prefix", err)
			}
		})
	}
}

func TestEscapeURI(t *testing.T) {
	for in, want := range map[string]string{
		"/plain/path-1_~.x":  "/plain/path-1_~.x",
		"/a b":               "/a%20b",
		"/a%20b":             "/a%2520b", // '%' is escaped: no double decoding upstream
		"/q?x#y":             "/q%3Fx%23y",
		"/caf\xc3\xa9":       "/caf%C3%A9",
		"/ctl\r\n\x7f":       "/ctl%0D%0A%7F",
		"/keep/!$&'()*+,;=:": "/keep/!$&'()*+,;=:",
	} {
		if got := escapeURI(in); got != want {
			t.Errorf("escapeURI(%q) = %q, want %q", in, got, want)
		}
	}
}
