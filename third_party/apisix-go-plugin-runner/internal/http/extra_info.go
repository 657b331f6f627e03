// apisix-identity-runner addition to apisix-go-plugin-runner v0.5.0
// (Apache License 2.0, see LICENSE and NOTICE in this directory).

package http

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/apache/apisix-go-plugin-runner/internal/util"
	"github.com/apache/apisix-go-plugin-runner/pkg/log"
)

// apisix-identity-runner patch: frame injection through an ExtraInfo answer.
// v0.5.0 read APISIX's answer (a variable, or a request or response body)
// with one conn.Read for the header and one for the payload. A payload larger
// than one read (about 219 KB on a unix socket) came back short, the error
// left the connection open, and the rest of the payload was then parsed as
// the next frames: a crafted body could plant a PrepareConf or shift answers
// between requests. readExtraInfoAnswer reads exactly the announced length
// and checks the frame type; closeOnError closes the connection on any
// failure, so handleConn's loop ends instead of reading from the middle of a
// frame.

// readExtraInfoAnswer reads one frame from c, which must be an ExtraInfo
// answer, and returns its payload. header is a HeaderLen scratch buffer.
func readExtraInfoAnswer(c io.Reader, header []byte) ([]byte, error) {
	if _, err := io.ReadFull(c, header); err != nil {
		return nil, fmt.Errorf("read extra info answer header: %w", err)
	}
	ty := header[0]
	header[0] = 0
	length := binary.BigEndian.Uint32(header)

	log.Infof("receive rpc type: %d data length: %d", ty, length)

	if ty != util.RPCExtraInfo {
		return nil, fmt.Errorf("extra info answer has rpc type %d, want %d", ty, util.RPCExtraInfo)
	}
	buf := make([]byte, length)
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, fmt.Errorf("read extra info answer payload (%d bytes): %w", length, err)
	}
	return buf, nil
}

// closeOnError logs err and closes c: after a failed read or write the
// stream is out of step with APISIX and must not be read again.
func closeOnError(c net.Conn, err error) {
	if !errors.Is(err, io.EOF) { // APISIX closing the connection is not news
		log.Errorf("extra info: %s; closing the connection", err)
	}
	_ = c.Close()
}
