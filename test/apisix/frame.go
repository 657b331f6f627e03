package apisix

import (
	"errors"
	"fmt"
	"io"
)

// RPC frame types, the first byte of each frame (apisix/constants.lua RPC_*).
const (
	TypeError        byte = 0
	TypePrepareConf  byte = 1
	TypeHTTPReqCall  byte = 2
	TypeExtraInfo    byte = 3
	TypeHTTPRespCall byte = 4
)

// MaxPayload is the largest payload a frame can carry: the length field has
// 3 bytes. APISIX refuses to send more ("the max length of data is ...").
const MaxPayload = 1<<24 - 1

// ErrPayloadTooLarge is returned by WriteFrame for a payload over MaxPayload.
var ErrPayloadTooLarge = errors.New("apisix: payload larger than 16 MiB - 1")

// WriteFrame writes one frame: the type byte, the payload length as 3
// big-endian bytes, then the payload. Header and payload go out in a single
// Write, as APISIX sends them in one sock:send call.
func WriteFrame(w io.Writer, ty byte, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(payload))
	}
	buf := make([]byte, 4+len(payload))
	buf[0] = ty
	buf[1] = byte(len(payload) >> 16)
	buf[2] = byte(len(payload) >> 8)
	buf[3] = byte(len(payload))
	copy(buf[4:], payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("apisix: write frame type %d: %w", ty, err)
	}
	return nil
}

// ReadFrame reads one frame and returns its type and payload. A stream that
// ends before the frame is complete gives io.ErrUnexpectedEOF; a stream that
// ends cleanly between frames gives io.EOF.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("apisix: read frame header: %w", err)
	}
	n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("apisix: read frame type %d payload (%d bytes): %w", hdr[0], n, err)
	}
	return hdr[0], payload, nil
}
