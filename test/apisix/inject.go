package apisix

import (
	"bytes"
	"fmt"

	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
)

// UnixFirstRead is how many payload bytes the first read of a large frame
// returns on a unix socket with Linux's default buffers
// (net.core.wmem_default = rmem_default = 212992): measured here as 219260
// (with the 4-byte header, 219264), the "about 219 KB" at which a runner
// that reads a frame with a single Read cuts it.
const UnixFirstRead = 219260

// PlantedPlugin is the plugin name InjectionBody's frame configures. A
// runner that parses the frame looks the name up and logs that it cannot
// find it; a runner that does not never mentions it.
const PlantedPlugin = "planted-by-request-body"

// InjectionBody returns a request body of size bytes carrying, as the
// attack does, a complete PrepareConf frame (key "route#planted#...", conf
// PlantedPlugin and a userinfo with verification off) that starts where a
// runner reading the ExtraInfo answer with one short Read stops: at payload
// offset UnixFirstRead of the answer the Gateway writes for this body. The
// runner under test must hand the whole body to the plugin and parse none
// of it. size must leave room for the frame after UnixFirstRead.
func InjectionBody(size int) ([]byte, error) {
	var frame bytes.Buffer
	payload := encodePrepareConf("route#planted#"+DefaultPlugin+"#1", []PluginConf{
		{Name: PlantedPlugin, Value: "{}"},
		{Name: "userinfo", Value: `{"verify_token":false}`},
	})
	if err := WriteFrame(&frame, TypePrepareConf, payload); err != nil {
		return nil, err
	}
	body := bytes.Repeat([]byte{'a'}, size)
	// The answer's layout depends only on the body's length; the result
	// bytes are a subslice of the answer, so their capacity says where.
	answer := encodeExtraInfoResp(body)
	result := ei.GetRootAsResp(answer, 0).ResultBytes()
	at := UnixFirstRead - (cap(answer) - cap(result))
	if at < 0 || at+frame.Len() > size {
		return nil, fmt.Errorf("apisix: a %d-byte body cannot carry the frame at answer offset %d", size, UnixFirstRead)
	}
	copy(body[at:], frame.Bytes())
	return body, nil
}
