//! `Config::load` on broken routes files: each file under `tests/configs/`
//! holds one class of mistake, and each test pins the exact lines
//! `waybill check` prints for it (file, line, column, field, message).
//! `tests/fixtures/minimal.yaml` is the valid counterpart, loaded into the
//! domain values it should produce.

use std::path::Path;
use std::time::Duration;

use waybill::config::{
    defaults, Config, ConfigErrors, Direction, HeaderCase, HostHeader, JsonStep, KeySource,
    ListenerId, RouteId, Side, UpstreamProtocol,
};

/// The errors of a broken file under `tests/configs/`, as displayed.
fn errors(name: &str) -> Vec<String> {
    failure(name)
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn failure(name: &str) -> ConfigErrors {
    match Config::load(&Path::new("tests/configs").join(name)) {
        Ok(_) => panic!("{name} should not load"),
        Err(errors) => errors,
    }
}

#[test]
fn every_broken_config_fails_to_load() {
    let dir = std::fs::read_dir("tests/configs").expect("tests/configs");
    let mut count = 0;
    for entry in dir {
        let path = entry.expect("entry").path();
        assert!(Config::load(&path).is_err(), "{} loaded", path.display());
        count += 1;
    }
    assert!(count >= 12, "only {count} broken configs");
}

#[test]
fn a_yaml_syntax_error_names_line_and_column() {
    assert_eq!(
        errors("syntax_error.yaml"),
        ["tests/configs/syntax_error.yaml:2:5: did not find expected ',' or ']', while parsing a flow sequence at line 1 column 10"]
    );
}

#[test]
fn an_unquoted_template_inside_braces_gets_a_quoting_hint() {
    let errors = errors("unquoted_template.yaml");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("tests/configs/unquoted_template.yaml:8:42: did not find expected ',' or '}', while parsing a flow mapping"), "{}", errors[0]);
    assert!(
        errors[0].ends_with(
            "quote values that contain `{`, `}`, `[`, `]` or `,`, e.g. `path: \"/orders/{id}\"`"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn an_unknown_field_lists_the_expected_fields() {
    assert_eq!(
        errors("unknown_field.yaml"),
        ["tests/configs/unknown_field.yaml:6:5: listeners[0]: unknown field `upstrem`, expected one of `name`, `bind`, `upstream`, `upstream_protocol`, `system`, `direction`, `host_header`, `header_case`, `forwarded`, `engine`, `timeout`, `connect_timeout`, `tap_limit`"]
    );
}

#[test]
fn a_wrong_type_says_what_type_was_expected() {
    assert_eq!(
        errors("wrong_type.yaml"),
        ["tests/configs/wrong_type.yaml:4:21: state.max_transactions: invalid type: string \"lots\", expected a whole number"]
    );
}

#[test]
fn a_missing_required_field_points_at_the_entry_lacking_it() {
    assert_eq!(
        errors("missing_field.yaml"),
        ["tests/configs/missing_field.yaml:4:5: listeners[0]: missing field `bind`"]
    );
}

#[test]
fn an_unknown_enum_value_lists_the_allowed_values() {
    assert_eq!(
        errors("unknown_variant.yaml"),
        ["tests/configs/unknown_variant.yaml:8:16: listeners[0].direction: unknown variant `sideways`, expected `inbound` or `outbound`"]
    );
}

#[test]
fn unknown_names_are_all_reported_with_what_is_declared() {
    assert_eq!(
        errors("unknown_names.yaml"),
        [
            "tests/configs/unknown_names.yaml:6:30: milestones[0].object: unknown key kind `parcel`; declared key kinds: order, shipment",
            "tests/configs/unknown_names.yaml:9:13: routes[0].system: unknown system `carrier`; declared systems: erp, wms",
            "tests/configs/unknown_names.yaml:10:17: routes[0].listeners[0]: unknown listener `carrier-egress`; declared listeners: wms-inbound",
            "tests/configs/unknown_names.yaml:13:7: routes[0].keys.tracking: unknown key kind `tracking`; declared key kinds: order, shipment",
            "tests/configs/unknown_names.yaml:14:16: routes[0].milestone: unknown milestone `label_created`; declared milestones: shipped",
        ]
    );
}

#[test]
fn a_root_that_is_not_a_declared_key_kind_is_refused() {
    assert_eq!(
        errors("bad_root.yaml"),
        ["tests/configs/bad_root.yaml:3:7: root: root `customer` is not a declared key kind; expected one of: order, shipment"]
    );
}

#[test]
fn flows_and_expectations_must_name_two_different_declared_milestones() {
    assert_eq!(
        errors("flow_milestones.yaml"),
        [
            "tests/configs/flow_milestones.yaml:9:54: flows[0].to: unknown milestone `shiped`; declared milestones: order_released, shipped",
            "tests/configs/flow_milestones.yaml:10:46: flows[1].to: flow `ship_to_ship` starts and ends at `shipped`; expected two different milestones",
            "tests/configs/flow_milestones.yaml:12:31: expectations[0].expect: unknown milestone `goods_issue_posted`; declared milestones: order_released, shipped",
        ]
    );
}

#[test]
fn duplicate_names_point_back_at_the_first_use() {
    assert_eq!(
        errors("duplicate_names.yaml"),
        [
            "tests/configs/duplicate_names.yaml:5:13: listeners[1].name: listener name `wms` is already used by listeners[0] at line 4; names must be unique",
            "tests/configs/duplicate_names.yaml:9:13: milestones[2].name: milestone name `released` is already used by milestones[0] at line 7; names must be unique",
            "tests/configs/duplicate_names.yaml:12:13: routes[1].name: route name `wms.release` is already used by routes[0] at line 11; names must be unique",
            "tests/configs/duplicate_names.yaml:15:13: flows[1].name: flow name `f` is already used by flows[0] at line 14; names must be unique",
        ]
    );
}

#[test]
fn bad_durations_say_what_a_duration_looks_like() {
    assert_eq!(
        errors("bad_duration.yaml"),
        [
            "tests/configs/bad_duration.yaml:8:14: listeners[0].timeout: invalid duration `abc` (expected number at 0); expected a number and a unit, e.g. `500ms`, `15m`, `24h`, `7d`",
            "tests/configs/bad_duration.yaml:10:15: state.ttl: duration `0s` is zero; expected a positive duration, e.g. `30s`",
        ]
    );
}

#[test]
fn bad_sizes_say_what_a_size_looks_like() {
    assert_eq!(
        errors("bad_size.yaml"),
        [
            "tests/configs/bad_size.yaml:4:22: observation.max_decoded_bytes: invalid size `1.5MiB`; expected bytes as an integer or with a unit, e.g. `65536`, `64KiB`, `1MiB`",
            "tests/configs/bad_size.yaml:10:16: listeners[0].tap_limit: invalid size `64k`; expected bytes as an integer or with a unit, e.g. `65536`, `64KiB`, `1MiB`",
        ]
    );
}

#[test]
fn bad_and_clashing_bind_addresses_are_refused() {
    assert_eq!(
        errors("bad_bind.yaml"),
        [
            "tests/configs/bad_bind.yaml:5:22: listeners[0].bind: invalid socket address `localhost:8080`; expected an IP address and port, e.g. `0.0.0.0:8080` or `[::1]:8080` (host names are not resolved)",
            "tests/configs/bad_bind.yaml:7:22: listeners[2].bind: address `127.0.0.1:8082` is already bound by listener `b` at line 6; each listener needs its own port",
            "tests/configs/bad_bind.yaml:8:22: listeners[3].bind: address `127.0.0.1:8081` is already bound by the admin surface (admin.bind); each listener needs its own port",
        ]
    );
}

#[test]
fn upstreams_must_be_http_or_https_urls_with_a_host() {
    assert_eq!(
        errors("bad_upstream.yaml"),
        [
            "tests/configs/bad_upstream.yaml:4:48: listeners[0].upstream: upstream URL scheme `ftp` is not supported; expected `http` or `https`",
            "tests/configs/bad_upstream.yaml:5:48: listeners[1].upstream: upstream URL `127.0.0.1:9000` has no scheme; expected e.g. `http://127.0.0.1:9000` or `https://api.carrier.example/v2`",
            "tests/configs/bad_upstream.yaml:6:48: listeners[2].upstream: invalid upstream URL `http://` (empty string); expected e.g. `http://127.0.0.1:9000` or `https://api.carrier.example/v2`",
            "tests/configs/bad_upstream.yaml:7:48: listeners[3].upstream: upstream URL `http://wms.local/api?x=1` has a query; expected only scheme, host, port and an optional base path",
        ]
    );
}

#[test]
fn a_lower_case_method_and_a_header_with_spaces_are_refused() {
    assert_eq!(
        errors("bad_method_and_header.yaml"),
        [
            "tests/configs/bad_method_and_header.yaml:8:22: routes[0].match.method: invalid HTTP method `post` (methods are case-sensitive: `POST`); expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT, or leave `method` out to match any",
            "tests/configs/bad_method_and_header.yaml:10:24: routes[0].keys.order.header: invalid header name `X Order Id`; expected a token such as `X-Order-Id`",
        ]
    );
}

#[test]
fn a_bad_regex_shows_the_regex_error() {
    assert_eq!(
        errors("bad_regex.yaml"),
        ["tests/configs/bad_regex.yaml:11:33: routes[0].keys.invoice.request_regex: invalid regex `INV-(?P<value>\\d+`: unclosed group"]
    );
}

#[test]
fn recursive_descent_and_filters_in_json_paths_are_unsupported() {
    assert_eq!(
        errors("bad_json_path.yaml"),
        [
            "tests/configs/bad_json_path.yaml:10:30: routes[0].keys.order.request_json: invalid JSON path `$..order_id`: recursive descent `..` is not supported, write every step (e.g. `$.lines[*].order`); supported: `$`, `.field`, `['field']`, `[0]`, `[*]`",
            "tests/configs/bad_json_path.yaml:11:34: routes[0].keys.shipment.response_json: invalid JSON path `$.lines[?(@.qty > 0)].shipment`: filters `[?(...)]` are not supported; supported: `$`, `.field`, `['field']`, `[0]`, `[*]`",
        ]
    );
}

#[test]
fn malformed_templates_and_unknown_path_params_are_refused() {
    assert_eq!(
        errors("bad_template.yaml"),
        [
            "tests/configs/bad_template.yaml:8:20: routes[0].match.path: invalid path template `orders`: it must start with `/`, e.g. `/v2/orders/{order_id}`",
            "tests/configs/bad_template.yaml:11:20: routes[1].match.path: invalid path template `/orders/{id`: unbalanced brace in `{id`; a parameter is a whole segment like `{id}`",
            "tests/configs/bad_template.yaml:14:20: routes[2].match.path: invalid path template `/orders/{id}/lines/{id}`: parameter `{id}` appears twice; give each a distinct name",
            "tests/configs/bad_template.yaml:19:28: routes[3].keys.order.path_param: `id` is not a parameter of `/orders/{order_id}`; its parameters: `order_id`",
        ]
    );
}

#[test]
fn routes_of_the_same_shape_and_method_overlap_and_name_each_other() {
    assert_eq!(
        errors("overlapping_routes.yaml"),
        ["tests/configs/overlapping_routes.yaml:16:12: routes[2].match: route `wms.read_order` overlaps route `wms.get_order` (routes[0] at line 8): both match GET `/orders/{id}` on the same listeners and neither is more specific; use a literal segment, a different method, different listeners or a content condition (e.g. `x12: \"214\"`)"]
    );
}

#[test]
fn bad_xml_paths_edi_addresses_and_content_conditions_say_what_is_supported() {
    assert_eq!(
        errors("bad_formats.yaml"),
        [
            "tests/configs/bad_formats.yaml:8:63: routes[0].match.content_type: invalid media type `text/xml; charset=utf-8`; expected `type/subtype` without parameters, e.g. `application/edi-x12` or `text/xml`",
            "tests/configs/bad_formats.yaml:10:32: routes[0].keys.shipment.request_xml: invalid XML path `//DeliveryDocument`: descendant search `//` is not supported, write every step; supported: `/Element/Child` (local names, prefixes ignored), `*` for any element, a final `/@attribute`",
            "tests/configs/bad_formats.yaml:11:30: routes[0].keys.order.response_xml: invalid XML path `/Envelope/Body/Item[1]/Order`: predicates and functions (`Item[1]`) are not supported; supported: `/Element/Child` (local names, prefixes ignored), `*` for any element, a final `/@attribute`",
            "tests/configs/bad_formats.yaml:14:45: routes[1].match.x12: invalid X12 transaction set id `21`; expected three digits, e.g. `\"214\"` (shipment status) or `\"856\"` (ship notice)",
            "tests/configs/bad_formats.yaml:14:64: routes[1].match.x12_segment: invalid X12 address `AT7*{value}`: a condition has no `{value}`; write the values the segment must carry; expected e.g. `AT7*D1` (segment AT7 whose element 1 is D1)",
            "tests/configs/bad_formats.yaml:16:32: routes[1].keys.shipment.request_x12: invalid X12 address `B10*PRO`: no `{value}`; mark the element (or component) that holds the key; expected e.g. `L11*{value}*BM` (segment L11, key in element 1, element 2 is BM)",
            "tests/configs/bad_formats.yaml:17:27: routes[1].keys.bol.request_x12: invalid X12 address `l11*{value}*BM`: `l11` is not a segment tag (2 or 3 upper-case letters or digits); expected e.g. `L11*{value}*BM` (segment L11, key in element 1, element 2 is BM)",
            "tests/configs/bad_formats.yaml:20:53: routes[2].match.edifact: invalid EDIFACT message type `iftsta`; expected up to six upper-case letters, e.g. `IFTSTA`, `DESADV` or `INVOIC`",
            "tests/configs/bad_formats.yaml:20:67: routes[2].match.json: invalid JSON condition `$.event = x`; expected `PATH == VALUE`, e.g. `$.event == tracker.updated`",
            "tests/configs/bad_formats.yaml:22:31: routes[2].keys.bol.request_edifact: invalid EDIFACT address `RFF+BN{value}`: `BN{value}`: only `{value}` may be written in braces, as a whole component; expected e.g. `RFF+CN:{value}` (segment RFF, element 1 is CN:key)",
            "tests/configs/bad_formats.yaml:23:30: routes[2].keys.order.request_form: a form field name must not be empty",
        ]
    );
}

#[test]
fn routes_differing_only_in_content_conditions_do_not_overlap_but_equal_conditions_do() {
    assert_eq!(
        errors("overlapping_conditions.yaml"),
        ["tests/configs/overlapping_conditions.yaml:18:12: routes[2].match: route `edi.status_again` overlaps route `edi.status` (routes[0] at line 8): both match POST `/edi/inbound` with the same `x12` condition on the same listeners and neither is more specific; use a literal segment, a different method, different listeners or a content condition (e.g. `x12: \"214\"`)"]
    );
}

#[test]
fn a_key_rule_needs_exactly_one_source() {
    assert_eq!(
        errors("key_source_count.yaml"),
        [
            "tests/configs/key_source_count.yaml:10:14: routes[0].keys.order: several sources given (header, query); expected exactly one per key kind",
            "tests/configs/key_source_count.yaml:11:17: routes[0].keys.shipment: no source given; expected one of `header`, `query`, `path_param`, `request_json`, `response_json`, `request_regex`, `response_regex`, `request_xml`, `response_xml`, `request_x12`, `response_x12`, `request_edifact`, `response_edifact`, `request_form`, `response_form`",
        ]
    );
}

#[test]
fn a_key_rule_written_as_a_bare_string_shows_the_expected_shape() {
    assert_eq!(
        errors("key_rule_not_a_mapping.yaml"),
        ["tests/configs/key_rule_not_a_mapping.yaml:10:14: routes[0].keys.order: invalid type: string \"$.x\", expected a mapping with one source, like `{ header: X-Order-Id }` or `{ request_json: $.order_id }`"]
    );
}

#[test]
fn an_unreadable_file_is_one_error_naming_the_file() {
    let failure = match Config::load(Path::new("tests/configs/no-such-file.yaml")) {
        Ok(_) => panic!("a missing file loaded"),
        Err(failure) => failure,
    };
    assert_eq!(failure.errors.len(), 1);
    let line = failure.to_string();
    assert!(
        line.starts_with("error: tests/configs/no-such-file.yaml: cannot read the routes file: "),
        "{line}"
    );
}

#[test]
fn the_display_prints_errors_then_warnings_one_per_line() {
    let text = failure("bad_root.yaml").to_string();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "error: tests/configs/bad_root.yaml:3:7: root: root `customer` is not a declared key kind; expected one of: order, shipment",
            "warning: tests/configs/bad_root.yaml:2:8: keys[0]: key kind `order` is declared but no route reads it",
            "warning: tests/configs/bad_root.yaml:2:15: keys[1]: key kind `shipment` is declared but no route reads it",
        ]
    );
}

#[test]
fn declarations_no_route_uses_are_warnings_not_errors() {
    let text = "\
systems: [wms]
keys: [order, invoice]
listeners:
  - { name: a, bind: 127.0.0.1:8080, upstream: http://127.0.0.1:9000, system: wms }
milestones:
  - { name: released, object: order }
  - { name: shipped, object: order }
routes:
  - { name: wms.release, system: wms, match: { path: \"/orders/{id}\" }, keys: { order: { path_param: id } }, milestone: released }
flows:
  - { name: order_to_ship, from: released, to: shipped, slo: 24h }
";
    let (config, warnings) = Config::from_yaml_with_warnings(text, "inline.yaml").expect("valid");
    assert_eq!(config.routes.len(), 1);
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "inline.yaml:2:15: keys[1]: key kind `invoice` is declared but no route reads it",
            "inline.yaml:7:13: milestones[1].name: milestone `shipped` is declared but no route marks it",
            "inline.yaml:11:13: flows[0].name: flow `order_to_ship` is never measured: no route marks `shipped`",
        ]
    );
}

#[test]
fn the_minimal_config_loads_into_typed_domain_values() {
    let (config, warnings) = Config::load_with_warnings(Path::new("tests/fixtures/minimal.yaml"))
        .expect("minimal.yaml is valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.source, "tests/fixtures/minimal.yaml");
    assert_eq!(config.root.as_str(), "order");
    assert_eq!(config.systems.names(), "erp, wms, carrier");
    assert_eq!(config.key_kinds.names(), "order, shipment, tracking");

    // Listeners keep file order; unset fields take the named defaults.
    let [wms, carrier] = config.listeners.as_slice() else {
        panic!("two listeners expected");
    };
    assert_eq!((wms.id, wms.name.as_str()), (ListenerId(0), "wms-inbound"));
    assert_eq!(wms.bind, "127.0.0.1:18080".parse().expect("addr"));
    assert!(!wms.upstream.is_tls());
    assert_eq!(wms.upstream.protocol, UpstreamProtocol::Auto);
    assert_eq!(wms.direction, Direction::Inbound);
    assert_eq!(wms.host_header, HostHeader::Preserve);
    assert_eq!(wms.header_case, HeaderCase::Preserve);
    assert_eq!(wms.timeout, defaults::UPSTREAM_TIMEOUT);
    assert_eq!(wms.connect_timeout, defaults::CONNECT_TIMEOUT);
    assert_eq!(wms.tap_limit, defaults::TAP_LIMIT);
    assert_eq!(carrier.id, ListenerId(1));
    assert!(carrier.upstream.is_tls());
    assert_eq!(carrier.upstream.uri.path(), "/v2");
    assert_eq!(carrier.direction, Direction::Outbound);
    assert_eq!(carrier.host_header, HostHeader::Upstream);
    assert_eq!(carrier.header_case, HeaderCase::Lowercase);
    assert_eq!(carrier.timeout, Duration::from_secs(10));
    assert_eq!(carrier.tap_limit, 16 * 1024);

    // Routes are in matching priority, most specific first, ids are indexes.
    let order: Vec<(RouteId, &str)> = config
        .routes
        .iter()
        .map(|r| (r.id, r.operation.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (RouteId(0), "wms.shipment_lines"),
            (RouteId(1), "wms.order_release"),
            (RouteId(2), "wms.ship"),
            (RouteId(3), "carrier.buy_label"),
        ]
    );
    assert!(config.routes.iter().all(|r| r.operation.id() == r.id.0));
    let lines = config.route(RouteId(0));
    assert_eq!(lines.method, None);
    assert!(lines.listeners.is_empty());
    assert!(lines.milestone.is_none());

    let buy = config.route(RouteId(3));
    assert_eq!(buy.system.as_str(), "carrier");
    assert_eq!(buy.method, Some(http::Method::POST));
    assert_eq!(buy.listeners, [ListenerId(1)]);
    assert!(buy.serves(ListenerId(1)) && !buy.serves(ListenerId(0)));
    assert_eq!(buy.path.matches("/shipments/SH-7/buy"), Some(vec!["SH-7"]));
    assert_eq!(
        buy.milestone.as_ref().map(|m| m.as_str()),
        Some("label_created")
    );
    let kinds: Vec<&str> = buy.keys.iter().map(|k| k.kind.as_str()).collect();
    assert_eq!(kinds, ["shipment", "tracking", "order"]);
    assert!(
        matches!(&buy.keys[0].source, KeySource::PathParam { name, index: 0 } if name == "shipment_id")
    );
    assert!(matches!(
        &buy.keys[1].source,
        KeySource::Json { side: Side::Response, path } if path.steps == [JsonStep::Field("tracking_code".into())]
    ));
    assert!(matches!(&buy.keys[2].source, KeySource::Header(name) if name == "x-order-id"));

    // Milestones know their object; flows their ends and objective.
    let shipped = config.milestones.get("shipped").expect("declared");
    assert_eq!(config.milestone_def(&shipped).object.as_str(), "shipment");
    let [flow] = config.flows.as_slice() else {
        panic!("one flow expected");
    };
    assert_eq!(flow.name.as_str(), "order_to_ship");
    assert_eq!(
        (flow.from.as_str(), flow.to.as_str()),
        ("order_released", "shipped")
    );
    assert_eq!(flow.slo, Duration::from_secs(24 * 3600));

    // Sections left out take their defaults.
    assert_eq!(
        config.admin.bind,
        defaults::ADMIN_BIND.parse().expect("addr")
    );
    assert_eq!(config.state.ttl, defaults::STATE_TTL);
    assert_eq!(config.observation.queue_capacity, defaults::QUEUE_CAPACITY);
    assert!(config.expectations.is_empty());
}
