#!/usr/bin/env python3
"""Writes the Grafana dashboards in this directory.

    python3 dashboards/build.py      # rewrites dashboards/*.json
    python3 dashboards/build.py DIR  # writes them into DIR instead

The JSON files are what Grafana, the Helm chart and the tests read; this
script only keeps their shared parts (template variables, datasource
references, grid layout, ids) consistent. Edit a panel here, run the script,
then `bash ci/helm.sh sync`, and commit the JSON with it.

Conventions (checked by tests/prometheus.rs):
- every panel and target uses the `${datasource}` variable, never a fixed uid;
- every query filters on `namespace=~"$namespace"` and `pod=~"$pod"` where the
  series carry them (absent labels match `.*`, so a plain Prometheus works);
- every panel has a description and a unit; panel ids are unique and the
  grid positions fit Grafana's 24 columns without overlapping;
- queries name only metrics the sidecar exports (or recording rules from
  alerts/waybill.rules.yaml).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

# Label filters shared by every query.
NS = 'namespace=~"$namespace"'
POD = 'pod=~"$pod"'
SEL = f"{NS},{POD}"
# The sidecar's own process metrics: only the targets that also export
# waybill metrics (the app container may export process_* too).
WAYBILL_TARGET = "and on (job, instance) waybill_state_keys"
UP = f'up{{job=~".*waybill.*",{SEL}}}'


def variables(flow_default="order_to_ship"):
    def query_var(name, label, query, multi=True, include_all=True, current=None):
        v = {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-variable"},
            "refresh": 2,
            "sort": 1,
            "multi": multi,
            "includeAll": include_all,
            "hide": 0,
        }
        if include_all:
            v["allValue"] = ".*"
            v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        if current is not None:
            v["current"] = {"selected": True, "text": current, "value": current}
        return v

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "refresh": 1,
                "hide": 0,
                "current": {},
            },
            query_var("namespace", "Namespace", "label_values(waybill_state_keys, namespace)"),
            query_var("pod", "Pod", f'label_values(waybill_state_keys{{{NS}}}, pod)'),
            query_var("system", "System", f'label_values(waybill_exchanges_total{{{NS}}}, system)'),
            query_var(
                "flow",
                "Flow",
                f'label_values(waybill_flows_total{{{NS}}}, flow)',
                multi=False,
                include_all=False,
                current=flow_default,
            ),
        ]
    }


def target(expr, legend="", ref="A", instant=False, fmt=None, exemplar=False):
    t = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend or "__auto"}
    if instant:
        t["instant"] = True
        t["range"] = False
    else:
        t["range"] = True
    if fmt:
        t["format"] = fmt
    if exemplar:
        t["exemplar"] = True
    return t


def thresholds(*steps, mode="absolute"):
    """steps: (color, value) pairs, the first value None (the base)."""
    return {"mode": mode, "steps": [{"color": c, "value": v} for c, v in steps]}


GREEN = thresholds(("green", None))


def panel(kind, title, description, targets, unit, w, h, thr=GREEN, options=None,
          field=None, overrides=None, threshold_line=False):
    defaults = {"unit": unit, "thresholds": thr, "color": {"mode": "thresholds" if kind in ("stat", "gauge", "bargauge") else "palette-classic"}}
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "line" if threshold_line else "off"},
        }
    if field:
        defaults.update(field)
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
        "_size": (w, h),
    }
    if kind == "stat":
        p["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value",
            "justifyMode": "auto",
            "orientation": "auto",
            **(options or {}),
        }
    if kind == "timeseries":
        p["options"] = {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
            **(options or {}),
        }
    return p


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def layout(panels):
    """Assigns ids and grid positions left to right, wrapping at 24 columns."""
    x = y = row_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_size")
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        if p["type"] == "row" and x != 0:
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        out.append(p)
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return out


def dashboard(uid, title, description, tags, panels, time_from, refresh="1m"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["waybill"] + tags,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "refresh": refresh,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                {
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "orange",
                    "name": "Sidecar restarts",
                    "expr": f"changes(process_start_time_seconds{{{SEL}}}[2m]) > 0 {WAYBILL_TARGET}",
                    "step": "1m",
                    "titleFormat": "waybill restarted",
                    "textFormat": "{{pod}} {{instance}}",
                },
            ]
        },
        "links": [
            {"title": "waybill dashboards", "type": "dashboards", "tags": ["waybill"], "asDropdown": True, "includeVars": True, "keepTime": True}
        ],
        "templating": variables(),
        "panels": layout(panels),
    }


# === Executive / ROI ===

FLOW = f'{SEL},flow="$flow"'


def executive():
    day = 86400
    slo_thr = thresholds(("green", None), ("yellow", 0.75 * day), ("red", day))
    share_thr = thresholds(("red", None), ("yellow", 0.9), ("green", 0.95))
    q = lambda quantile, rng: (
        f"histogram_quantile({quantile}, sum by (le) "
        f"(increase(waybill_flow_duration_seconds_bucket{{{FLOW}}}[{rng}])))"
    )
    panels = [
        row("Order to ship ($flow) against its SLO"),
        panel("stat", "Median time — $flow",
              "Half of the $flow flows completed in the selected time range took less than this (p50, from the flow "
              "duration histogram, so precise to a bucket). The colour turns yellow at 18h and red at 24h, the "
              "order_to_ship SLO of the example config; adjust the thresholds if your SLO differs.",
              [target(q(0.5, "$__range"), "p50", instant=True)], "s", 6, 5, slo_thr),
        panel("stat", "95th percentile — $flow",
              "95 of every 100 $flow flows completed in the selected range were faster than this (p95). "
              "Red above 24h, the example config's order_to_ship SLO.",
              [target(q(0.95, "$__range"), "p95", instant=True)], "s", 6, 5, slo_thr),
        panel("stat", "Shipped within SLO — $flow",
              "Share of $flow flows completed in the selected range that met their SLO (the `slo` of the flow in the "
              "routes file). The objective in the alert rules is 95%: green at or above it, red below 90%.",
              [target(f'sum(increase(waybill_flows_total{{{FLOW},slo="met"}}[$__range])) / '
                      f'sum(increase(waybill_flows_total{{{FLOW}}}[$__range]))', "within SLO", instant=True)],
              "percentunit", 6, 5, share_thr, field={"min": 0, "max": 1, "decimals": 1}),
        panel("stat", "Flows completed — $flow",
              "How many $flow flows completed in the selected range (orders shipped, for order_to_ship).",
              [target(f"sum(increase(waybill_flows_total{{{FLOW}}}[$__range]))", "completed", instant=True)],
              "short", 6, 5, GREEN, field={"decimals": 0}),
        panel("timeseries", "p50 and p95 trend — $flow",
              "Median and 95th percentile of $flow durations over the previous hour, at each point in time. The red "
              "line is 24h, the order_to_ship SLO of the example config. Hover a point on the Operations dashboard's "
              "heatmap to open the trace of a slow flow.",
              [target(f"histogram_quantile(0.5, sum by (le) (rate(waybill_flow_duration_seconds_bucket{{{FLOW}}}[1h])))", "p50"),
               target(f"histogram_quantile(0.95, sum by (le) (rate(waybill_flow_duration_seconds_bucket{{{FLOW}}}[1h])))", "p95", ref="B")],
              "s", 16, 8, thresholds(("transparent", None), ("red", day)), threshold_line=True),
        panel("timeseries", "Share within SLO by flow",
              "For every flow, the share completed within its SLO over the previous day. Each flow has its own SLO "
              "(routes file `flows:`).",
              [target(f'sum by (flow) (rate(waybill_flows_total{{{SEL},slo="met"}}[1d])) / '
                      f'sum by (flow) (rate(waybill_flows_total{{{SEL}}}[1d]))', "{{flow}}")],
              "percentunit", 8, 8, thresholds(("red", None), ("green", 0.95)), field={"min": 0, "max": 1}),
        row("Delivery to invoice"),
        panel("stat", "Delivered to invoiced — p50",
              "Median time from the carrier's delivery event to the freight invoice being posted (flow "
              "delivered_to_invoiced of the example config): how long freight costs stay unknown to finance.",
              [target(f'histogram_quantile(0.5, sum by (le) (increase(waybill_flow_duration_seconds_bucket{{{SEL},flow="delivered_to_invoiced"}}[$__range])))', "p50", instant=True)],
              "s", 6, 5, thresholds(("green", None), ("yellow", 5 * day), ("red", 7 * day))),
        panel("stat", "Delivered to invoiced — p95",
              "95th percentile of the delivery-to-freight-invoice time. Red at 7 days, the flow's SLO in the example config.",
              [target(f'histogram_quantile(0.95, sum by (le) (increase(waybill_flow_duration_seconds_bucket{{{SEL},flow="delivered_to_invoiced"}}[$__range])))', "p95", instant=True)],
              "s", 6, 5, thresholds(("green", None), ("yellow", 5 * day), ("red", 7 * day))),
        panel("timeseries", "Orders started and shipments shipped per day",
              "Throughput: transactions (orders) started per day, and shipments that reached `shipped` per day "
              "(a split order ships more than one shipment).",
              [target(f"sum(increase(waybill_transactions_created_total{{{SEL}}}[1d]))", "orders started"),
               target(f'sum(increase(waybill_milestones_total{{{SEL},milestone="shipped"}}[1d]))', "shipments shipped", ref="B")],
              "short", 12, 5),
        row("Freight cost"),
        panel("timeseries", "Freight cost invoiced per carrier per day",
              "Freight cost the carriers invoiced per day, by carrier (the `system` a freight_cost value is about) "
              "and currency: each shipment's invoiced amount counted once, a re-sent invoice replaces it and is "
              "never added (measure `freight_cost`, role `actual`). Currencies are never converted or summed together.",
              [target(f'sum by (system, unit) (increase(waybill_measure_total{{{SEL},measure="freight_cost",role="actual"}}[1d]))',
                      "{{system}} {{unit}}")],
              "short", 12, 7, field={"decimals": 2}),
        panel("stat", "Freight cost per shipment",
              "Mean invoiced freight cost per shipment invoiced in the selected range, per currency (from the "
              "per-shipment value histogram of `freight_cost`, role `actual`).",
              [target(f'sum by (unit) (increase(waybill_measure_value_sum{{{SEL},measure="freight_cost",role="actual"}}[$__range])) / '
                      f'sum by (unit) (increase(waybill_measure_value_count{{{SEL},measure="freight_cost",role="actual"}}[$__range]))',
                      "{{unit}}", instant=True)],
              "short", 6, 7, GREEN, field={"decimals": 2}),
        panel("stat", "Invoiced over quote",
              "Invoice variance: for shipments whose invoice arrived in the selected range, the sum of invoiced minus "
              "quoted freight cost (the rate at label purchase), per currency. Positive means carriers billed more than "
              "they quoted; each shipment beyond the tolerance opens a `freight_variance` exception for the carrier.",
              [target(f'sum by (unit) (increase(waybill_measure_variance_sum{{{SEL},measure="freight_cost"}}[$__range]))',
                      "{{unit}}", instant=True)],
              "short", 6, 7, thresholds(("green", None), ("yellow", 0.01)), field={"decimals": 2}),
        panel("timeseries", "Invoices above their quote per day",
              "Shipments per day whose invoice differs from the quoted rate by more than 1 (currency unit), from "
              "the variance histogram of `freight_cost` (invoiced minus quoted), and all shipments compared.",
              [target(f'sum(increase(waybill_measure_variance_count{{{SEL},measure="freight_cost"}}[1d])) - '
                      f'sum(increase(waybill_measure_variance_bucket{{{SEL},measure="freight_cost",le=~"1|1.0"}}[1d]))',
                      "over quote by more than 1"),
               target(f'sum(increase(waybill_measure_variance_count{{{SEL},measure="freight_cost"}}[1d]))',
                      "compared", ref="B")],
              "short", 24, 6),
        row("Exceptions"),
        panel("stat", "Exceptions per 100 orders",
              "Exceptions opened (missing goods issue, duplicate shipment, unmatched freight invoice …) for every "
              "100 transactions started in the selected range. Each one is work for a person.",
              [target(f"100 * sum(increase(waybill_exceptions_opened_total{{{SEL}}}[$__range])) / "
                      f"sum(increase(waybill_transactions_created_total{{{SEL}}}[$__range]))", "per 100 orders", instant=True)],
              "short", 6, 6, thresholds(("green", None), ("yellow", 2), ("red", 5)), field={"decimals": 1}),
        panel("stat", "Mean time to resolve an exception",
              "Average time from an exception opening to its resolution (the awaited milestone arriving), for "
              "exceptions resolved in the selected range.",
              [target(f"sum(increase(waybill_exception_resolution_seconds_sum{{{SEL}}}[$__range])) / "
                      f"sum(increase(waybill_exception_resolution_seconds_count{{{SEL}}}[$__range]))", "mean", instant=True)],
              "s", 6, 6, thresholds(("green", None), ("yellow", 3600), ("red", 14400))),
        panel("bargauge", "Open exceptions by owner system",
              "Exceptions open right now, by the system whose team must act (the `owner` in the routes file).",
              [target(f"sum by (owner) (waybill_exceptions_open{{{SEL}}})", "{{owner}}", instant=True)],
              "short", 12, 6, thresholds(("green", None), ("yellow", 1), ("red", 10)),
              options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
    ]
    return dashboard(
        "waybill-executive", "waybill / Executive",
        "Is the business promise kept? Order-to-ship time against its SLO, share of orders shipped in time, "
        "delivery-to-invoice latency, freight cost per carrier and per shipment and invoice variance, exception "
        "load and resolution time, throughput.",
        ["executive"], panels, "now-7d", refresh="5m")


# === Operations / on-call ===

def operations():
    SYS = f'{SEL},system=~"$system"'
    rate = "$__rate_interval"
    panels = [
        row("Transactions"),
        panel("stat", "Open transactions",
              "Transactions held in the state store that have not completed (not every object reached a terminal milestone).",
              [target(f'sum(waybill_state_transactions{{{SEL},status="open"}})', "open", instant=True)],
              "short", 4, 6),
        panel("stat", "Stuck transactions",
              "Open transactions resting at a milestone longer than that milestone's `stuck_after`. Zero when none "
              "is stuck or no milestone declares `stuck_after`.",
              [target(f"sum(waybill_transactions_stuck{{{SEL}}}) or vector(0)", "stuck", instant=True)],
              "short", 4, 6, thresholds(("green", None), ("red", 1))),
        panel("timeseries", "In-flight transactions by milestone",
              "Open transactions by the latest milestone they reached: where orders are right now. A band that "
              "keeps growing is a step that stopped moving.",
              [target(f"sum by (milestone) (waybill_transactions_in_flight{{{SEL}}})", "{{milestone}}")],
              "short", 16, 6, options={"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                                                  "calcs": ["lastNotNull", "max"]}},
              field={"custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 60, "showPoints": "never",
                                "stacking": {"mode": "normal", "group": "A"}, "thresholdsStyle": {"mode": "off"}}}),
        panel("timeseries", "Stuck transactions by milestone",
              "Where stuck transactions rest (alert WaybillTransactionsStuck). Empty when nothing is stuck.",
              [target(f"sum by (milestone) (waybill_transactions_stuck{{{SEL}}})", "{{milestone}}")],
              "short", 12, 6),
        panel("timeseries", "Milestones recorded by milestone",
              "Business steps recorded per second, by milestone (first time on each object). A milestone that drops "
              "to zero while the one before it continues is where transactions are waiting.",
              [target(f"sum by (milestone) (rate(waybill_milestones_total{{{SEL}}}[{rate}]))", "{{milestone}}")],
              "ops", 12, 6),
        row("Exceptions"),
        panel("table", "Open exceptions by kind and owner",
              "Exceptions open right now, by kind and by the system whose team owns them.",
              [target(f"sum by (kind, owner) (waybill_exceptions_open{{{SEL}}})", "", instant=True, fmt="table")],
              "short", 8, 7, thresholds(("green", None), ("red", 1)),
              options={"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
              overrides=[{"matcher": {"id": "byName", "options": "Time"}, "properties": [{"id": "custom.hidden", "value": True}]}]),
        panel("timeseries", "Exceptions opened vs resolved",
              "Exceptions opened and resolved per hour, by kind. Opened staying above resolved is a growing backlog "
              "(alert WaybillExceptionsAccumulating).",
              [target(f"sum by (kind) (increase(waybill_exceptions_opened_total{{{SEL}}}[1h]))", "opened {{kind}}"),
               target(f"sum by (kind) (increase(waybill_exceptions_resolved_total{{{SEL}}}[1h]))", "resolved {{kind}}", ref="B")],
              "short", 8, 7),
        panel("timeseries", "Milestone repeats by milestone",
              "Milestones marked again on an object that already had them: duplicate bookings, replayed webhooks.",
              [target(f"sum by (milestone) (rate(waybill_milestone_repeats_total{{{SEL}}}[{rate}]))", "{{milestone}}")],
              "ops", 8, 7),
        panel("timeseries", "Retries by operation",
              "Attempts of an operation that followed a failed attempt on the same object (routes with `repeats:`). "
              "Empty until the first retry.",
              [target(f"sum by (operation) (rate(waybill_retries_total{{{SEL}}}[{rate}]))", "{{operation}}")],
              "ops", 12, 6),
        panel("timeseries", "Duplicates by operation",
              "Second successful attempts of an operation on the same object with a new or no idempotency key: the "
              "same thing done twice (routes with `repeats:`). Empty until the first duplicate.",
              [target(f"sum by (operation) (rate(waybill_duplicates_total{{{SEL}}}[{rate}]))", "{{operation}}")],
              "ops", 12, 6),
        row("Systems (rate, errors, duration)"),
        panel("timeseries", "Request rate by system",
              "Exchanges observed per second, by the system serving them.",
              [target(f"sum by (system) (rate(waybill_exchanges_total{{{SYS}}}[{rate}]))", "{{system}}")],
              "reqps", 8, 7),
        panel("timeseries", "Error ratio by system",
              "Share of exchanges answered with a 5xx or not answered at all (status class `error`). Above 10% for "
              "ten minutes pages (alert WaybillSystemErrorRatioHigh).",
              [target(f'sum by (system) (rate(waybill_exchanges_total{{{SYS},status_class=~"5xx|error"}}[{rate}])) / '
                      f"sum by (system) (rate(waybill_exchanges_total{{{SYS}}}[{rate}]))", "{{system}}")],
              "percentunit", 8, 7, thresholds(("transparent", None), ("red", 0.1)), threshold_line=True,
              field={"min": 0}),
        panel("timeseries", "Duration p95 by system",
              "95th percentile of the time from request head to the end of the response, by system.",
              [target(f"histogram_quantile(0.95, sum by (system, le) (rate(waybill_exchange_duration_seconds_bucket{{{SYS}}}[{rate}])))", "{{system}}")],
              "s", 8, 7),
        panel("timeseries", "Requests by operation and status class",
              "Exchanges per second by operation and status class: which call fails, and how.",
              [target(f"sum by (operation, status_class) (rate(waybill_exchanges_total{{{SYS}}}[{rate}])) > 0", "{{operation}} {{status_class}}")],
              "reqps", 12, 8),
        panel("table", "Slowest operations (p95)",
              "The ten operations with the highest 95th percentile duration over the selected range.",
              [target(f"topk(10, histogram_quantile(0.95, sum by (system, operation, le) "
                      f"(rate(waybill_exchange_duration_seconds_bucket{{{SYS}}}[$__range]))))", "", instant=True, fmt="table")],
              "s", 12, 8, thresholds(("green", None), ("yellow", 1), ("red", 5)),
              options={"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
              overrides=[{"matcher": {"id": "byName", "options": "Time"}, "properties": [{"id": "custom.hidden", "value": True}]}]),
        panel("timeseries", "Request body size p95 by operation",
              "95th percentile of the request body bytes that streamed to the upstream, by operation (all of "
              "each body, as sent: compressed bodies count compressed). A jump means bigger documents (batches, "
              "attachments), which cost the upstream and extraction more.",
              [target(f"histogram_quantile(0.95, sum by (operation, le) (rate(waybill_exchange_request_body_size_bytes_bucket{{{SYS}}}[{rate}])))", "{{operation}}")],
              "bytes", 12, 7),
        panel("timeseries", "Response body size p95 by operation",
              "95th percentile of the response body bytes that streamed back to the client, by operation (not "
              "counted for the sidecar's own 502/504).",
              [target(f"histogram_quantile(0.95, sum by (operation, le) (rate(waybill_exchange_response_body_size_bytes_bucket{{{SYS}}}[{rate}])))", "{{operation}}")],
              "bytes", 12, 7),
        row("Flows and traces"),
        panel("heatmap", "Flow durations — $flow (exemplars open the trace)",
              "How long $flow flows take, as a heatmap of the duration histogram. The dots are exemplars: click one to "
              "open the trace of that transaction (configure the Prometheus datasource's exemplar link to your "
              "tracing backend, see dashboards/provisioning/datasource.yaml).",
              [target(f'sum by (le) (increase(waybill_flow_duration_seconds_bucket{{{SEL},flow="$flow"}}[{rate}]))',
                      "{{le}}", fmt="heatmap", exemplar=True)],
              "s", 16, 9,
              options={"calculate": False, "yAxis": {"unit": "s", "axisPlacement": "left"},
                       "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange"},
                       "exemplars": {"color": "rgba(255,0,255,0.7)"}, "tooltip": {"show": True, "yHistogram": True},
                       "legend": {"show": True}, "rowsFrame": {"layout": "auto"}}),
        panel("timeseries", "Flow p95 by flow",
              "95th percentile duration of every flow over the previous hour, with exemplars (trace links).",
              [target(f"histogram_quantile(0.95, sum by (flow, le) (rate(waybill_flow_duration_seconds_bucket{{{SEL}}}[1h])))",
                      "{{flow}}", exemplar=True)],
              "s", 8, 9),
    ]
    return dashboard(
        "waybill-operations", "waybill / Operations",
        "For the on-call engineer: where transactions are stuck, which exceptions are open and who owns them, "
        "retries and duplicates, per-system and per-operation rate, errors and duration, and traces of slow flows.",
        ["operations"], panels, "now-6h")


# === Sidecar health ===

def sidecar():
    rate = "$__rate_interval"
    panels = [
        row("Scrape health"),
        panel("stat", "Targets up",
              "waybill admin ports Prometheus scraped successfully at the last scrape (scrape jobs whose name contains \"waybill\").",
              [target(f"sum({UP})", "up", instant=True)], "short", 4, 5,
              thresholds(("red", None), ("green", 1))),
        panel("stat", "Targets down",
              "waybill admin ports whose last scrape failed (alert WaybillSidecarDown after five minutes).",
              [target(f"count({UP} == 0) or vector(0)", "down", instant=True)], "short", 4, 5,
              thresholds(("green", None), ("red", 1))),
        panel("timeseries", "Scrape duration",
              "How long Prometheus takes to scrape each sidecar's /metrics.",
              [target(f'scrape_duration_seconds{{job=~".*waybill.*",{SEL}}}', "{{instance}}")], "s", 8, 5),
        panel("stat", "Uptime",
              "Time since each sidecar process started; a short uptime means a recent restart or deploy.",
              [target(f"time() - (process_start_time_seconds{{{SEL}}} {WAYBILL_TARGET})", "{{instance}}", instant=True)],
              "s", 8, 5, thresholds(("yellow", None), ("green", 3600))),
        row("Pipeline drops and failures"),
        panel("timeseries", "Observation drops",
              "Exchanges the proxy could not hand to extraction (queue full or closed). Traffic is never slowed; "
              "these observations are lost (alert WaybillObservationsDropped).",
              [target(f"sum by (pod, reason) (rate(waybill_observations_dropped_total{{{SEL}}}[{rate}]))", "{{pod}} {{reason}}")],
              "ops", 8, 7, thresholds(("transparent", None), ("red", 0.0001)), threshold_line=True),
        panel("timeseries", "Span export drops",
              "Trace spans dropped instead of exported over OTLP, by reason (alert WaybillTelemetrySpansDropped), "
              "next to the spans the collector accepted and incoming traceparent headers that could not be parsed.",
              [target(f"sum by (pod, reason) (rate(waybill_telemetry_dropped_spans_total{{{SEL}}}[{rate}]))", "{{pod}} dropped {{reason}}"),
               target(f"sum by (pod) (rate(waybill_telemetry_exported_spans_total{{{SEL}}}[{rate}]))", "{{pod}} exported", ref="B"),
               target(f"sum by (pod) (rate(waybill_telemetry_invalid_traceparent_total{{{SEL}}}[{rate}]))", "{{pod}} invalid traceparent", ref="C")],
              "ops", 8, 7),
        panel("timeseries", "Extraction failures by reason",
              "Exchanges whose keys could not be extracted, by system and reason (malformed JSON, key missing, "
              "truncated …). A rise after a deploy fires WaybillExtractionFailuresAfterDeploy.",
              [target(f'sum by (system, reason) (rate(waybill_extraction_failures_total{{{SEL},system=~"$system"}}[{rate}]))', "{{system}} {{reason}}")],
              "ops", 8, 7),
        panel("timeseries", "Correlated observations by result",
              "Observations the correlator applied: `correlated` carried a business key, `no_keys` carried none.",
              [target(f"sum by (result) (rate(waybill_correlated_observations_total{{{SEL}}}[{rate}]))", "{{result}}")],
              "ops", 8, 6),
        panel("timeseries", "Unresolved milestones",
              "Milestones whose object key was neither in the exchange nor linked to it; recorded against the "
              "transaction instead. A steady rate points at a routes file missing a key.",
              [target(f"sum by (milestone) (rate(waybill_milestones_unresolved_total{{{SEL}}}[{rate}]))", "{{milestone}}")],
              "ops", 8, 6),
        panel("timeseries", "Upstream errors by listener and kind",
              "Requests the upstream behind a listener failed to answer (refused, timeout, reset, TLS, protocol); "
              "the client got a 502 or 504 (alert WaybillUpstreamUnreachable).",
              [target(f"sum by (listener, error) (rate(waybill_upstream_errors_total{{{SEL}}}[{rate}]))", "{{listener}} {{error}}")],
              "ops", 8, 6),
        panel("timeseries", "Proxy responses by listener and status class",
              "Responses the sidecar sent to clients, by listener and status class.",
              [target(f"sum by (listener, status_class) (rate(waybill_proxy_requests_total{{{SEL}}}[{rate}])) > 0", "{{listener}} {{status_class}}")],
              "reqps", 8, 6),
        panel("timeseries", "Time in the sidecar by system (p50, p99)",
              "Time each exchange spends inside waybill, the upstream's time excluded (request head to handed to "
              "the upstream, plus response head to handed to the client's connection): the overhead the sidecar "
              "adds to every call. Tens of microseconds is normal; milliseconds mean a starved runtime.",
              [target(f"histogram_quantile(0.5, sum by (system, le) (rate(waybill_request_handle_seconds_bucket{{{SEL}}}[{rate}])))", "{{system}} p50"),
               target(f"histogram_quantile(0.99, sum by (system, le) (rate(waybill_request_handle_seconds_bucket{{{SEL}}}[{rate}])))", "{{system}} p99", ref="B")],
              "s", 8, 6),
        panel("timeseries", "Requests refused by the proxy, by listener and reason",
              "HTTP/1 requests the sidecar answered itself instead of forwarding (RFC 9112): no, several or an "
              "invalid Host (400), a transfer coding other than chunked (501), a request body that broke off or "
              "was malformed chunked (400). Broken or hostile clients; nothing reached the upstream.",
              [target(f"sum by (listener, reason) (rate(waybill_requests_rejected_total{{{SEL}}}[{rate}]))", "{{listener}} {{reason}}")],
              "ops", 8, 6),
        row("State store"),
        panel("timeseries", "State store size",
              "Transactions held (open and complete), business keys indexed, and deadlines waiting in the "
              "reconciliation index, per pod.",
              [target(f"sum by (pod, status) (waybill_state_transactions{{{SEL}}})", "{{pod}} transactions {{status}}"),
               target(f"sum by (pod) (waybill_state_keys{{{SEL}}})", "{{pod}} keys", ref="B"),
               target(f"sum by (pod) (waybill_reconcile_deadlines{{{SEL}}})", "{{pod}} deadlines", ref="C")],
              "short", 12, 7),
        panel("timeseries", "State removals by reason",
              "Transactions removed from the state store: `ttl` (finished or abandoned, expired as configured) and "
              "`capacity` (evicted because the store is full: alert WaybillStateEvictingOpenTransactions).",
              [target(f"sum by (reason) (rate(waybill_state_removed_total{{{SEL}}}[{rate}]))", "{{reason}}")],
              "ops", 12, 7),
        row("Idempotency guard (routes with idempotency_guard)"),
        panel("timeseries", "Guard replays by operation",
              "Repeated requests the idempotency guard answered from a stored first response instead of forwarding "
              "them (each one a duplicate booking avoided). Only listeners with a guarded route have these series.",
              [target(f"sum by (listener, operation) (rate(waybill_guard_replays_total{{{SEL}}}[{rate}]))", "{{listener}} {{operation}}")],
              "ops", 8, 6),
        panel("timeseries", "Guard stored responses",
              "First responses the guard holds to answer repeats, per listener.",
              [target(f"sum by (pod, listener) (waybill_guard_stored_responses{{{SEL}}})", "{{pod}} {{listener}}")],
              "short", 8, 6),
        panel("timeseries", "Guard evictions by reason",
              "Stored responses dropped: `expired` (past the window) or `capacity` (the route's max_entries was "
              "reached; a repeat after that is forwarded again).",
              [target(f"sum by (listener, reason) (rate(waybill_guard_evictions_total{{{SEL}}}[{rate}]))", "{{listener}} {{reason}}")],
              "ops", 8, 6),
        row("Resources"),
        panel("timeseries", "Resident memory",
              "Resident memory of each sidecar process (process_resident_memory_bytes).",
              [target(f"process_resident_memory_bytes{{{SEL}}} {WAYBILL_TARGET}", "{{pod}} {{instance}}")],
              "bytes", 8, 7),
        panel("timeseries", "CPU",
              "CPU used by each sidecar process, in cores (rate of process_cpu_seconds_total).",
              [target(f"rate(process_cpu_seconds_total{{{SEL}}}[{rate}]) {WAYBILL_TARGET}", "{{pod}} {{instance}}")],
              "short", 8, 7, field={"decimals": 3}),
        panel("timeseries", "Open file descriptors",
              "File descriptors (sockets, files) open in each sidecar process, against its limit.",
              [target(f"process_open_fds{{{SEL}}} {WAYBILL_TARGET}", "{{pod}} open"),
               target(f"process_max_fds{{{SEL}}} {WAYBILL_TARGET}", "{{pod}} limit", ref="B")],
              "short", 8, 7),
        row("Shared state (state.backend: redis)"),
        panel("timeseries", "Redis connection",
              "1 while the sidecar's last Redis command succeeded (alert WaybillSharedStateUnreachable after five "
              "minutes at 0), and failed Redis commands by operation; each is retried. Only sidecars in Redis "
              "mode have these series.",
              [target(f"min by (pod) (waybill_state_shared_connected{{{SEL}}})", "{{pod}} connected"),
               target(f"sum by (pod, operation) (rate(waybill_state_shared_errors_total{{{SEL}}}[{rate}]))", "{{pod}} {{operation}} errors", ref="B")],
              "short", 8, 7),
        panel("timeseries", "Own entries waiting for Redis",
              "Entries each sidecar holds for the shared log while Redis is unreachable: in memory (bounded by "
              "state.redis.buffer) and in the on-disk spill (state.redis.spill, kept across restarts).",
              [target(f"sum by (pod) (waybill_state_shared_buffered{{{SEL}}})", "{{pod}} memory"),
               target(f"sum by (pod) (waybill_state_shared_spill_entries{{{SEL}}})", "{{pod}} spill", ref="B")],
              "short", 8, 7),
        panel("timeseries", "Shared log entries",
              "Own entries appended to the shared log, entries applied by origin (local: this sidecar's own), "
              "entries written to the spill, and own entries dropped by reason (alert WaybillSharedStateDropped).",
              [target(f"sum by (pod) (rate(waybill_state_shared_appended_total{{{SEL}}}[{rate}]))", "{{pod}} appended"),
               target(f"sum by (pod, origin) (rate(waybill_state_shared_applied_total{{{SEL}}}[{rate}]))", "{{pod}} applied {{origin}}", ref="B"),
               target(f"sum by (pod) (rate(waybill_state_shared_spilled_total{{{SEL}}}[{rate}]))", "{{pod}} spilled", ref="C"),
               target(f"sum by (pod, reason) (rate(waybill_state_shared_dropped_total{{{SEL}}}[{rate}]))", "{{pod}} dropped {{reason}}", ref="D")],
              "ops", 8, 7),
    ]
    return dashboard(
        "waybill-sidecar", "waybill / Sidecar health",
        "Is waybill itself healthy? Scrape health, dropped observations and spans, extraction failures, state "
        "store size and evictions, memory and CPU of the sidecar, and the shared Redis store's connection and "
        "outage buffers.",
        ["sidecar"], panels, "now-6h")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    for name, board in (("waybill-executive", executive()), ("waybill-operations", operations()), ("waybill-sidecar", sidecar())):
        path = os.path.join(out, f"{name}.json")
        with open(path, "w") as f:
            json.dump(board, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {path} ({len(board['panels'])} panels)")


if __name__ == "__main__":
    main()
