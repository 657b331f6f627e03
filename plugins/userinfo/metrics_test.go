package userinfo

import "github.com/prometheus/client_golang/prometheus/testutil"

func testutilCount() float64 { return testutil.ToFloat64(metricAssertions) }
