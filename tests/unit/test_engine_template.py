"""imagetool.engine.template: the Go text/template subset of docker's --format.
Expected strings are what Go's text/template (with docker/cli's functions) prints."""
import pytest

from imagetool.engine import template as t
from imagetool.engine.template import Struct, TemplateError, parse, render
from imagetool.errors import UsageError

OBJ = {
    "Id": "4f6a1b",
    "Name": "/web",
    "State": {"Status": "running", "Running": True, "Pid": 42, "ExitCode": 0, "Health": None},
    "Config": {"Cmd": ["nginx", "-g", "daemon off;"], "Env": [], "Labels": {"b": "2", "a": "<1>"}},
    "Mounts": [{"Name": "data", "Destination": "/data"}, {"Name": "logs", "Destination": "/var/log"}],
    "Ratio": 1.5,
    "Million": 1e6,
    "Small": 0.00001,
    "Ports": [80, 443],
}


@pytest.mark.parametrize("tmpl,want", [
    ("{{.Id}}", "4f6a1b"),
    ("{{.State.Status}} {{.State.Pid}}", "running 42"),
    ("{{.}}", "map[Config:map[Cmd:[nginx -g daemon off;] Env:[] Labels:map[a:<1> b:2]] Id:4f6a1b Million:1e+06 "
              "Mounts:[map[Destination:/data Name:data] map[Destination:/var/log Name:logs]] Name:/web "
              "Ports:[80 443] Ratio:1.5 Small:1e-05 State:map[ExitCode:0 Health:<nil> Pid:42 Running:true "
              "Status:running]]"),
    ("{{.State.Running}}", "true"),
    ("{{.Nope}}", "<no value>"),
    ("{{.Nope.Deeper}}", "<no value>"),
    ("{{.State.Health}}", "<no value>"),
    ("{{index .Config.Labels \"a\"}}", "<1>"),
    ("{{index .Config.Labels \"zz\"}}", "<no value>"),
    ("{{index .Ports 1}}", "443"),
    ("{{index .Mounts 1 \"Name\"}}", "logs"),
    ("{{(index .Mounts 0).Destination}}", "/data"),
    ("{{json .Config.Cmd}}", '["nginx","-g","daemon off;"]'),
    ("{{json .Config.Labels}}", '{"b":"2","a":"<1>"}'),  # no HTML escaping (docker's encoder)
    ("{{json .State}}", '{"Status":"running","Running":true,"Pid":42,"ExitCode":0,"Health":null}'),
    ("{{json .Ratio}} {{json .Million}} {{json 1e21}} {{json .Small}}", "1.5 1000000 1e+21 0.00001"),
    ("{{json 0.0000001}}", "1e-7"),
    ("{{json \"a\u2028b\"}}", '"a\\u2028b"'),
    ("{{.Config.Labels | json}}", '{"b":"2","a":"<1>"}'),
    ("{{.Ratio}} {{.Million}} {{.Small}} {{1234567.5}}", "1.5 1e+06 1e-05 1.2345675e+06"),
    ("{{range .Config.Cmd}}[{{.}}]{{end}}", "[nginx][-g][daemon off;]"),
    ("{{range $i, $c := .Config.Cmd}}{{$i}}={{$c}} {{end}}", "0=nginx 1=-g 2=daemon off; "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=<1>;b=2;"),  # a map ranges sorted
    ("{{range $v := .Ports}}{{$v}},{{end}}", "80,443,"),
    ("{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}", "data:/data logs:/var/log "),
    ("{{range .Config.Env}}x{{else}}none{{end}}", "none"),
    ("{{range .Nope}}x{{end}}", ""),
    ("{{range .Ports}}{{if eq . 80}}{{continue}}{{end}}{{.}}{{end}}", "443"),
    ("{{range .Ports}}{{.}}{{break}}{{end}}", "80"),
    ("{{range .Mounts}}{{$.Id}}{{end}}", "4f6a1b4f6a1b"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Config.Env}}env{{else if .Config.Cmd}}cmd{{else}}none{{end}}", "cmd"),
    ("{{if not .Config.Env}}empty{{end}}", "empty"),
    ("{{if .Nope}}x{{else}}missing is false{{end}}", "missing is false"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{with .Nope}}x{{else}}no{{end}}", "no"),
    ("{{with $s := .State.Status}}{{$s}}{{end}}", "running"),
    ("{{println .Id}}", "4f6a1b\n"),
    ("{{println 1 2 \"a\"}}", "1 2 a\n"),
    ("{{print 1 2 \"a\" 3}}", "1 2a3"),
    ("{{upper .Name}} {{lower \"ABC\"}}", "/WEB abc"),
    ("{{title \"hello-world foo_bar\"}}", "Hello-World Foo_bar"),
    ("{{join .Config.Cmd \" \"}}", "nginx -g daemon off;"),
    ("{{split \"a,b,c\" \",\"}}", "[a b c]"),
    ("{{index (split \"a:b\" \":\") 1}}", "b"),
    ("{{len .Config.Cmd}} {{len .Id}} {{len .Config.Labels}}", "3 6 2"),
    ("{{pad .Id 1 2}}|{{pad \"\" 1 1}}|", " 4f6a1b  ||"),
    ("{{truncate .Id 3}}", "4f6"),
    ("{{printf \"%s-%d-%5.2f|%-4s|%04d|%x|%q|%t|%v\" .Id 3 .Ratio \"x\" 7 255 \"a\\\"b\" true .Ports}}",
     "4f6a1b-3- 1.50|x   |0007|ff|\"a\\\"b\"|true|[80 443]"),
    ("{{printf \"%.3s\" .Id}}", "4f6"),
    ("{{printf \"%d %s\"}}", "%!d(MISSING) %!s(MISSING)"),
    ("{{printf \"%d\" \"x\" 5}}", "%!d(string=x)%!(EXTRA int=5)"),
    ("{{printf \"%v\" .State.Health}}", "<nil>"),
    ("{{printf \"%s\" .Config.Cmd}}", "[nginx -g daemon off;]"),
    ("{{.Id | upper}}", "4F6A1B"),
    ("{{.Id | printf \"id=%s\"}}", "id=4f6a1b"),
    ("{{\"x\" | upper | printf \"<%s>\"}}", "<X>"),
    ("a  {{- .Id -}}  b", "a4f6a1bb"),
    ("a\n  {{- .Id}}\n", "a4f6a1b\n"),
    ("x{{/* a comment */}}y", "xy"),
    ("x {{- /* a comment */ -}} y", "xy"),
    ("{{$x := 1}}{{range .Ports}}{{$x = .}}{{end}}{{$x}}", "443"),
    ("{{$n := .Name}}{{$n}}", "/web"),
    ("{{if eq .State.Status \"running\" \"paused\"}}live{{end}}", "live"),
    ("{{if ne .State.ExitCode 0}}bad{{else}}ok{{end}}", "ok"),
    ("{{if gt .State.Pid 10}}big{{end}}{{if le 1 1}}le{{end}}{{if lt \"a\" \"b\"}}lt{{end}}", "biglelt"),
    ("{{if and .Id .Nope}}t{{else}}f{{end}}", "f"),
    ("{{or .Nope \"default\"}}", "default"),
    ("{{and .Id .Name}}", "/web"),
    ("{{slice .Id 1 3}}", "f6"),
    ("{{html \"<a&b>\"}} {{urlquery \"a b&c\"}}", "&lt;a&amp;b&gt; a+b%26c"),
    ("{{ .Id }}", "4f6a1b"),
    ("{{\"a}}b\"}}", "a}}b"),
    ("{{`raw\\n`}}", "raw\\n"),
    ("{{'a'}}", "97"),
    ("{{0x10}} {{-3}}", "16 -3"),
    ("line1\nline2 {{.Id}}", "line1\nline2 4f6a1b"),
])
def test_renders_like_go(tmpl, want):
    assert render(tmpl, OBJ) == want


def test_parse_once_render_many():
    tm = parse("{{.A}}-{{len .B}}")
    assert [tm.render({"A": i, "B": "x" * i}) for i in range(3)] == ["0-0", "1-1", "2-2"]


@pytest.mark.parametrize("tmpl,msg", [
    ("{{foo .Id}}", 'template: :1: function "foo" not defined'),
    ("{{if .Id}}x", "template: :1: unexpected EOF"),
    ("{{range .Ports}}x", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{.Id", "template: :1: unclosed action"),
    ("a\nb\n{{.Id", "template: :3: unclosed action"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if}}x{{end}}", "template: :1: missing value for if"),
    ("{{range}}x{{end}}", "template: :1: missing value for range"),
    ("{{$nope}}", 'template: :1: undefined variable "$nope"'),
    ("{{\"abc}}", "template: :1: unterminated quoted string"),
    ("{{#}}", "template: :1: unexpected bad character U+0023 '#' in command"),
    ("{{.Id | \"x\"}}", "template: :1: non executable command in pipeline stage 2"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{/* open", "template: :1: unclosed comment"),
    ("{{(.Id}}", "template: :1: unclosed left paren"),
    ("{{.Id)}}", "template: :1: unexpected right paren U+0029 ')'"),
])
def test_parse_errors_in_dockers_words(tmpl, msg):
    with pytest.raises(TemplateError) as e:
        parse(tmpl)
    assert str(e.value) == "template parsing error: " + msg
    assert isinstance(e.value, UsageError)


@pytest.mark.parametrize("tmpl,msg", [
    ("{{.State.Health.Status}}", 'template: :1:2: executing "" at <.State.Health.Status>: '
                                 "nil pointer evaluating interface {}.Status"),
    ("{{.Id.Foo}}", 'template: :1:2: executing "" at <.Id.Foo>: can\'t evaluate field Foo in type interface {}'),
    ("{{index .Ports 7}}", 'template: :1:2: executing "" at <index>: error calling index: index out of range: 7'),
    ("{{index .Nope 0}}", 'template: :1:2: executing "" at <index>: error calling index: index of untyped nil'),
    ("{{index .Ports \"a\"}}", 'template: :1:2: executing "" at <index>: error calling index: '
                               "cannot index slice/array with type string"),
    ("{{upper .Ports}}", 'template: :1:8: executing "" at <.Ports>: wrong type for value; expected string; '
                         "got []interface {}"),
    ("{{.Nope | upper}}", 'template: :1:10: executing "" at <upper>: invalid value; expected string'),
    ("{{len 3}}", 'template: :1:2: executing "" at <len>: error calling len: len of type int'),
    ("{{eq 1 \"a\"}}", 'template: :1:2: executing "" at <eq>: error calling eq: incompatible types for comparison'),
    ("{{lt .Ports 1}}", 'template: :1:2: executing "" at <lt>: error calling lt: invalid type for comparison'),
    ("{{.Id .Name}}", 'template: :1:2: executing "" at <.Id>: Id is not a method but has arguments'),
    ("{{upper}}", 'template: :1:2: executing "" at <upper>: wrong number of args for upper: want 1 got 0'),
    ("{{range .Id}}x{{end}}", 'template: :1:8: executing "" at <.Id>: range can\'t iterate over 4f6a1b'),
    ("x\n  {{.Id.Foo}}", 'template: :2:4: executing "" at <.Id.Foo>: can\'t evaluate field Foo in type interface {}'),
])
def test_execution_errors_in_dockers_words(tmpl, msg):
    tm = parse(tmpl)
    with pytest.raises(TemplateError) as e:
        tm.render(OBJ)
    assert str(e.value) == "template parsing error: " + msg


def test_missingkey_error_is_dockers_inspect_fallback():
    with pytest.raises(TemplateError) as e:
        render("{{.Nope}}", OBJ, missingkey="error")
    assert str(e.value) == ('template parsing error: template: :1:2: executing "" at <.Nope>: '
                            'map has no entry for key "Nope"')
    assert render("{{.State.Pid}}", OBJ, missingkey="error") == "42"


def test_a_struct_has_no_missing_fields_and_can_have_methods():
    row = Struct("*formatter.ContainerContext", {"ID": "abc", "Label": lambda k: {"a": "1"}.get(k, ""),
                                                 "Size": lambda: "2B"})
    assert render('{{.ID}} {{.Label "a"}}|{{.Label "b"}}| {{.Size}}', row) == "abc 1|| 2B"
    with pytest.raises(TemplateError) as e:
        render("{{.Nope}}", row)
    assert str(e.value).endswith("at <.Nope>: can't evaluate field Nope in type *formatter.ContainerContext")
    with pytest.raises(TemplateError):
        render("{{.ID \"x\"}}", row)


def test_range_rebinding_and_variables_scope():
    # a variable declared inside a range is gone after its {{end}}; $ stays the root
    with pytest.raises(TemplateError, match='undefined variable "\\$y"'):
        parse("{{range .Ports}}{{$y := .}}{{end}}{{$y}}")
    assert render("{{range .Mounts}}{{$m := .Name}}{{$m}}{{end}}", OBJ) == "datalogs"


def test_prepare_handles_table_prefix_and_escapes():
    assert t.prepare(r"table {{.ID}}\t{{.Names}}") == (True, "{{.ID}}\t{{.Names}}")
    assert t.prepare(r"  {{.ID}}\n") == (False, "{{.ID}}\n")
    assert t.prepare("{{json .}}") == (False, "{{json .}}")


def test_table_header_uses_the_header_map_and_keeps_names():
    headers = {"ID": "CONTAINER ID", "Names": "NAMES", "Status": "STATUS"}
    header, tm = t.table_format(r"table {{.ID}}\t{{upper .Names}}\t{{json .Status}}", headers)
    assert header == "CONTAINER ID\tNAMES\tSTATUS"
    assert tm.render({"ID": "a", "Names": "web", "Status": "Up"}) == 'a\tWEB\t"Up"'
    assert t.table_header(r"table {{.ID}}", headers) == "CONTAINER ID"
    assert t.table_header("{{.ID}}", headers) is None
    # not a table: no header; a bad template is the parse error
    assert t.table_format("{{.ID}}", headers)[0] == ""
    with pytest.raises(TemplateError):
        t.table_format("table {{nope}}", headers)


def test_tabwrite_aligns_like_gos_tabwriter_with_dockers_settings():
    rows = ["CONTAINER ID\tIMAGE\tNAMES", "4f6a1b2c3d4e\tbusybox\tweb", "1\tx\ta-much-longer-name"]
    assert t.tabwrite(rows) == ("CONTAINER ID   IMAGE     NAMES\n"
                                "4f6a1b2c3d4e   busybox   web\n"
                                "1              x         a-much-longer-name\n")
    # minimum width 10 including the padding; the last cell is not padded
    assert t.tabwrite(["a\tb", "c\td"]) == "a         b\nc         d\n"
    # cells are aligned only across contiguous lines that have the column
    assert t.tabwrite(["aaaa\tbbb\td", "aa\tb\tdd", "a\t", "aa\tcccc\teee"]) == (
        "aaaa      bbb       d\n"
        "aa        b         dd\n"
        "a         \n"
        "aa        cccc      eee\n")
    assert t.tabwrite(["no tabs", "here"]) == "no tabs\nhere\n"
    assert t.tabwrite("x\ty\n") == "x         y\n"


def test_go_quote():
    assert t.quote('nginx -g "daemon off;"') == '"nginx -g \\"daemon off;\\""'
    assert t.quote("a\tb\x01\u00e9") == '"a\\tb\\x01\u00e9"'
