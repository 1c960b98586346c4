package bench

import (
	"fmt"
	"image/color"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

var dashed = []vg.Length{vg.Points(6), vg.Points(4)}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return p
}

// RateSeries is one number's Graph calls per bin and its limit per second.
type RateSeries struct {
	Name  string
	Limit float64
	Bins  []int
}

// RateLimitChart draws each number's calls per bin (thin steps), their
// one-second moving average (thick) and the limit per bin (dashed).
func RateLimitChart(path string, series []RateSeries, bin time.Duration, workers int) error {
	per := bin.Seconds()
	p := newPlot(fmt.Sprintf("Graph calls per %s per number, %d worker processes", bin, workers),
		"seconds since the first call", fmt.Sprintf("calls per %s", bin))
	window := int(time.Second / bin)
	for i, s := range series {
		c := plotutil.Color(i)
		raw := make(plotter.XYs, len(s.Bins))
		avg := make(plotter.XYs, 0, len(s.Bins))
		sum := 0
		for j, n := range s.Bins {
			raw[j] = plotter.XY{X: float64(j) * per, Y: float64(n)}
			sum += n
			if j >= window {
				sum -= s.Bins[j-window]
			}
			if j >= window-1 {
				avg = append(avg, plotter.XY{X: float64(j+1) * per, Y: float64(sum) / float64(window)})
			}
		}
		steps, err := plotter.NewLine(raw)
		if err != nil {
			return err
		}
		steps.StepStyle = plotter.PostStep
		steps.Color = withAlpha(c, 110)
		steps.Width = vg.Points(0.8)
		p.Add(steps)
		if len(avg) > 1 {
			mean, err := plotter.NewLine(avg)
			if err != nil {
				return err
			}
			mean.Color, mean.Width = c, vg.Points(2.2)
			p.Add(mean)
			p.Legend.Add(fmt.Sprintf("%s: calls (thin), 1 s mean (thick)", s.Name), mean)
		}
		end := float64(len(s.Bins)) * per
		limit, err := plotter.NewLine(plotter.XYs{{X: 0, Y: s.Limit * per}, {X: end, Y: s.Limit * per}})
		if err != nil {
			return err
		}
		limit.Color, limit.Width, limit.Dashes = c, vg.Points(1.5), dashed
		p.Add(limit)
		p.Legend.Add(fmt.Sprintf("%s: limit %g/s", s.Name, s.Limit), limit)
	}
	// Head room above the highest limit keeps the legend off the lines.
	top := 0.0
	for _, s := range series {
		top = max(top, s.Limit*per)
		for _, n := range s.Bins {
			top = max(top, float64(n))
		}
	}
	p.Y.Min, p.Y.Max = 0, top*1.45
	return p.Save(26*vg.Centimeter, 14*vg.Centimeter, path)
}

// LatencyChart draws the distribution of sorted latencies with its p50
// and p99. The slowest 0.5 % are left out of the bins so the body of the
// distribution stays readable; the p99 line still shows where they start.
func LatencyChart(path string, sorted []time.Duration) error {
	if len(sorted) == 0 {
		return nil
	}
	cut := sorted[:max(1, len(sorted)*995/1000)]
	vals := make(plotter.Values, len(cut))
	for i, d := range cut {
		vals[i] = Ms(d)
	}
	p50, p99 := Ms(Percentile(sorted, 0.5)), Ms(Percentile(sorted, 0.99))
	p := newPlot(fmt.Sprintf("Publish → terminal event, %d commands one at a time", len(sorted)), "milliseconds", "commands")
	h, err := plotter.NewHist(vals, 40)
	if err != nil {
		return err
	}
	h.FillColor = withAlpha(plotutil.Color(0), 160)
	h.LineStyle.Width = vg.Points(0.5)
	p.Add(h)
	top := 0.0
	for _, b := range h.Bins {
		top = max(top, b.Weight)
	}
	for i, q := range []struct {
		name string
		v    float64
	}{{"p50", p50}, {"p99", p99}} {
		l, err := plotter.NewLine(plotter.XYs{{X: q.v, Y: 0}, {X: q.v, Y: top * 1.05}})
		if err != nil {
			return err
		}
		l.Color, l.Width, l.Dashes = plotutil.Color(i+1), vg.Points(1.8), dashed
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s %.2f ms", q.name, q.v), l)
	}
	p.Y.Min = 0
	return p.Save(20*vg.Centimeter, 12*vg.Centimeter, path)
}

// ScalingChart draws measured throughput against worker processes, with
// perfect scaling from one worker for comparison.
func ScalingChart(path string, workers []int, measured, ideal []float64) error {
	p := newPlot("Throughput against worker processes", "worker processes", "commands per second")
	m, id := make(plotter.XYs, len(workers)), make(plotter.XYs, len(workers))
	ticks := make([]plot.Tick, 0, len(workers))
	for i, w := range workers {
		m[i] = plotter.XY{X: float64(w), Y: measured[i]}
		id[i] = plotter.XY{X: float64(w), Y: ideal[i]}
		ticks = append(ticks, plot.Tick{Value: float64(w), Label: strconv.Itoa(w)})
	}
	il, err := plotter.NewLine(id)
	if err != nil {
		return err
	}
	il.Color, il.Dashes, il.Width = color.Gray{Y: 120}, dashed, vg.Points(1.5)
	p.Add(il)
	p.Legend.Add("linear (1 worker × n)", il)
	ml, pts, err := plotter.NewLinePoints(m)
	if err != nil {
		return err
	}
	ml.Color, ml.Width = plotutil.Color(0), vg.Points(2.2)
	pts.Color, pts.Radius = plotutil.Color(0), vg.Points(4)
	p.Add(ml, pts)
	p.Legend.Add("measured", ml, pts)
	labels, err := plotter.NewLabels(plotter.XYLabels{XYs: m, Labels: func() []string {
		out := make([]string, len(measured))
		for i, v := range measured {
			out[i] = fmt.Sprintf("  %.0f/s (×%.2f)", v, v/measured[0])
		}
		return out
	}()})
	if err != nil {
		return err
	}
	p.Add(labels)
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = 0.5, float64(workers[len(workers)-1])+1
	p.Y.Min = 0
	p.Y.Max = max(measured[len(measured)-1], ideal[len(ideal)-1]) * 1.15
	p.Legend.Left = true
	return p.Save(18*vg.Centimeter, 12*vg.Centimeter, path)
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	// RGBA's components are 16-bit: the top byte of each fits a uint8.
	return color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: a} //nolint:gosec // G115: see above
}
