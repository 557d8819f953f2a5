import BusCore
import Testing

@testable import TaskGraphRunner

/// A scope with the usual names filled in, for the template tests.
private func templateScope(
    options: [String: JSONValue] = [:], context: [String: JSONValue] = [:], nodeId: String? = "node-1", graphId: String? = "graph-1",
    taskId: String? = "task-1"
) -> TemplateScope {
    TemplateScope(options: options, context: context, nodeId: nodeId, graphId: graphId, taskId: taskId)
}

private func templateRender(_ text: JSONValue, options: [String: JSONValue] = [:]) throws(TemplateRenderError) -> JSONValue {
    try OptionTemplate.render(text, scope: templateScope(options: options))
}

/// SplitMix64: a small seeded generator, so the fuzz inputs are the same on every run.
private struct TemplateFuzzGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

private let templateSampleOptions: [String: JSONValue] = [
    "count": 3,
    "ratio": 1.5,
    "enabled": true,
    "disabled": false,
    "zero": 0,
    "empty": "",
    "name": "rack-7",
    "missingValue": nil,
    "obm": ["host": "10.1.1.1", "user": "admin", "port": 623],
    "list": ["first", 2, ["inner": "deep"]],
]

@Suite("Option templates: typed and text rendering")
struct TemplateTypedRenderingTests {
    @Test func singlePlaceholderKeepsTheValueType() throws {
        #expect(try templateRender("{{options.count}}", options: templateSampleOptions) == .number(3))
        #expect(try templateRender("{{options.ratio}}", options: templateSampleOptions) == .number(1.5))
        #expect(try templateRender("{{options.enabled}}", options: templateSampleOptions) == .bool(true))
        #expect(try templateRender("{{options.obm}}", options: templateSampleOptions) == templateSampleOptions["obm"])
        #expect(try templateRender("{{options.list}}", options: templateSampleOptions) == templateSampleOptions["list"])
        #expect(try templateRender("{{options.name}}", options: templateSampleOptions) == "rack-7")
    }

    @Test func whitespaceInsideTheBracesIsAllowed() throws {
        #expect(try templateRender("{{ options.count }}", options: templateSampleOptions) == .number(3))
        #expect(try templateRender("{{\n\toptions.count \n}}", options: templateSampleOptions) == .number(3))
    }

    @Test func textAroundThePlaceholderMakesAString() throws {
        #expect(try templateRender(" {{options.count}}", options: templateSampleOptions) == " 3")
        #expect(try templateRender("{{options.count}} ", options: templateSampleOptions) == "3 ")
    }

    @Test func tripleAndAmpersandBracesBehaveLikeDouble() throws {
        #expect(try templateRender("{{{options.count}}}", options: templateSampleOptions) == .number(3))
        #expect(try templateRender("{{{ options.name }}}-x", options: templateSampleOptions) == "rack-7-x")
        #expect(try templateRender("{{& options.count}}", options: templateSampleOptions) == .number(3))
    }

    @Test func textInterpolationUsesEachValuesStringForm() throws {
        let options = templateSampleOptions
        #expect(try templateRender("n={{options.count}}", options: options) == "n=3")
        #expect(try templateRender("r={{options.ratio}}", options: options) == "r=1.5")
        #expect(try templateRender("{{options.enabled}}/{{options.disabled}}", options: options) == "true/false")
        #expect(try templateRender("obm={{options.obm}}", options: options) == #"obm={"host":"10.1.1.1","port":623,"user":"admin"}"#)
        #expect(try templateRender("list={{options.list}}", options: options) == #"list=["first",2,{"inner":"deep"}]"#)
        #expect(
            try templateRender("ipmitool -H {{options.obm.host}} -U {{options.obm.user}}", options: options)
                == "ipmitool -H 10.1.1.1 -U admin")
    }

    @Test func compactJSONEscapesStrings() throws {
        let options: [String: JSONValue] = ["odd": ["q": "say \"hi\"\\\n\u{01}é"]]
        #expect(try templateRender("{{options.odd}}!", options: options) == #"{"q":"say \"hi\"\\\n\u0001é"}!"#)
    }

    @Test func numberStringForms() {
        #expect(TemplateText.numberText(3) == "3")
        #expect(TemplateText.numberText(-0.0) == "0")
        #expect(TemplateText.numberText(600_000) == "600000")
        #expect(TemplateText.numberText(0.25) == "0.25")
        #expect(TemplateText.numberText(.nan) == "NaN")
        #expect(TemplateText.numberText(-.infinity) == "-Infinity")
        #expect(TemplateText.interpolated(.array([.number(.infinity)])) == "[null]")
    }

    @Test func rendersEveryStringInsideArraysAndObjects() throws {
        let value: JSONValue = ["a": ["{{options.count}}", "x{{options.count}}", 7, nil, false], "b": ["c": "{{task.id}}"]]
        let expected: JSONValue = ["a": [3, "x3", 7, nil, false], "b": ["c": "task-1"]]
        #expect(try templateRender(value, options: templateSampleOptions) == expected)
    }

    @Test func stringsWithoutPlaceholdersAreUntouched() throws {
        for text in ["", "plain", "a } b { c", "{ {x} }", "€ and 🎉"] {
            #expect(try templateRender(.string(text)) == .string(text))
        }
    }
}

@Suite("Option templates: names and paths")
struct TemplateLookupTests {
    @Test func scopeNames() throws {
        let scope = templateScope(options: ["a": 1], context: ["target": "node-9", "graphName": "g"])
        #expect(try OptionTemplate.render("{{options.a}}", scope: scope) == 1)
        #expect(try OptionTemplate.render("{{context.target}}", scope: scope) == "node-9")
        #expect(try OptionTemplate.render("{{task.nodeId}}", scope: scope) == "node-1")
        #expect(try OptionTemplate.render("{{task.graphId}}", scope: scope) == "graph-1")
        #expect(try OptionTemplate.render("{{task.id}}", scope: scope) == "task-1")
        #expect(try OptionTemplate.render("{{nodeId}}", scope: scope) == "node-1")
        #expect(try OptionTemplate.render("{{ graphId }}", scope: scope) == "graph-1")
    }

    @Test func dottedPathsAndArrayIndexes() throws {
        let options = templateSampleOptions
        #expect(try templateRender("{{options.obm.port}}", options: options) == 623)
        #expect(try templateRender("{{options.list.0}}", options: options) == "first")
        #expect(try templateRender("{{options.list.1}}", options: options) == 2)
        #expect(try templateRender("{{options.list.2.inner}}", options: options) == "deep")
    }

    @Test func badPathsAreMissing() {
        for expression in [
            "options.list.3", "options.list.-1", "options.list.+1", "options.list.x", "options.count.x", "options..count",
            "options.count.", ".options", "options.list.99999999999999999999999", "nothing.here", "options.obm.host.length",
        ] {
            #expect(throws: TemplateRenderError(message: "Value does not exist for \(expression)")) {
                try templateRender(.string("{{\(expression)}}"), options: templateSampleOptions)
            }
        }
    }

    @Test func absentTaskValuesAreMissing() {
        let scope = templateScope(nodeId: nil, graphId: nil, taskId: nil)
        for expression in ["nodeId", "graphId", "task.nodeId", "task.graphId", "task.id"] {
            #expect(throws: TemplateRenderError(message: "Value does not exist for \(expression)")) {
                try OptionTemplate.render(.string("{{\(expression)}}"), scope: scope)
            }
        }
    }

    @Test func callersCanAddRoots() throws {
        var scope = templateScope()
        scope.values["api"] = ["base": "http://10.0.0.1:8080/api/current"]
        #expect(try OptionTemplate.render("{{api.base}}/files", scope: scope) == "http://10.0.0.1:8080/api/current/files")
    }
}

@Suite("Option templates: fallbacks and missing values")
struct TemplateFallbackTests {
    @Test func firstFoundItemWins() throws {
        let options = templateSampleOptions
        #expect(try templateRender("{{ options.nope | options.name | fallback }}", options: options) == "rack-7")
        #expect(try templateRender("{{ options.nope | options.count }}", options: options) == 3)
        #expect(try templateRender("{{options.name|options.count}}", options: options) == "rack-7")
    }

    @Test func itemsWithoutADotAreLiterals() throws {
        #expect(try templateRender("{{ options.nope | fallback }}") == "fallback")
        #expect(try templateRender("{{ options.nope | 600 }}") == "600")
        #expect(try templateRender("port {{ options.nope | 623 }}") == "port 623")
        #expect(try templateRender("{{ literal }}") == "literal")
    }

    @Test func nullFallsThroughButFalsyValuesAreFound() throws {
        let options = templateSampleOptions
        #expect(try templateRender("{{ options.missingValue | options.name }}", options: options) == "rack-7")
        #expect(try templateRender("{{ options.zero | options.name }}", options: options) == 0)
        #expect(try templateRender("{{ options.disabled | options.name }}", options: options) == false)
        #expect(try templateRender("{{ options.empty | options.name }}", options: options) == "")
    }

    @Test func emptyItemsAreSkipped() throws {
        #expect(try templateRender("{{ options.nope || | fallback }}") == "fallback")
    }

    @Test func nothingFoundIsAnError() {
        #expect(throws: TemplateRenderError(message: "Value does not exist for options.a | options.b")) {
            try templateRender("x {{ options.a | options.b }} y")
        }
        #expect(throws: TemplateRenderError(message: "Value does not exist for options.missingValue")) {
            try templateRender("{{options.missingValue}}", options: templateSampleOptions)
        }
        #expect(throws: TemplateRenderError(message: "Value does not exist for nodeId | options.x")) {
            try OptionTemplate.render("{{nodeId | options.x}}", scope: templateScope(nodeId: nil))
        }
    }

    @Test func errorDescriptionIsTheMessage() {
        let error = TemplateRenderError(message: "Value does not exist for options.a")
        #expect(error.description == "Value does not exist for options.a")
        #expect("\(error)" == "Value does not exist for options.a")
    }
}

@Suite("Option templates: nested rendering")
struct TemplateNestedRenderingTests {
    @Test func lookedUpTemplatesAreRenderedAgain() throws {
        let options: [String: JSONValue] = ["a": "{{options.b}}", "b": "{{options.c}}", "c": 42, "text": "c is {{options.c}}"]
        #expect(try templateRender("{{options.a}}", options: options) == 42)
        #expect(try templateRender("a={{options.a}}", options: options) == "a=42")
        #expect(try templateRender("{{options.text}}!", options: options) == "c is 42!")
    }

    @Test func lookedUpObjectsAreRenderedToo() throws {
        let options: [String: JSONValue] = [
            "obm": ["host": "{{options.host}}", "ports": ["{{options.port}}"]], "host": "10.0.0.5", "port": 623,
        ]
        #expect(try templateRender("{{options.obm}}", options: options) == ["host": "10.0.0.5", "ports": [623]])
        #expect(try templateRender("obm {{options.obm}}", options: options) == #"obm {"host":"10.0.0.5","ports":[623]}"#)
    }

    @Test func fallbackValueIsRenderedToo() throws {
        let options: [String: JSONValue] = ["backup": "{{nodeId}}-backup"]
        #expect(try templateRender("{{ options.primary | options.backup }}", options: options) == "node-1-backup")
    }

    /// `o0` refers to `o1` … refers to `o<levels>`, which is plain: rendering `{{options.o0}}` goes `levels` deep.
    private func templateChain(levels: Int) -> [String: JSONValue] {
        var options: [String: JSONValue] = ["o\(levels)": "end"]
        for level in 0..<levels { options["o\(level)"] = .string("{{options.o\(level + 1)}}") }
        return options
    }

    @Test func fiftyLevelsAreAllowed() throws {
        #expect(try templateRender("{{options.o0}}", options: templateChain(levels: 50)) == "end")
    }

    @Test func fiftyOneLevelsAreAnError() {
        #expect(throws: TemplateRenderError(message: "Template rendering exceeded 50 levels: options.o50")) {
            try templateRender("{{options.o0}}", options: templateChain(levels: 51))
        }
    }

    @Test func cyclesStopAtTheDepthLimit() {
        #expect(throws: TemplateRenderError(message: "Template rendering exceeded 50 levels: options.loop")) {
            try templateRender("{{options.loop}}", options: ["loop": "again {{options.loop}}"])
        }
        #expect(throws: TemplateRenderError.self) {
            try templateRender("{{options.a}}", options: ["a": "{{options.b}}", "b": "{{options.a}}"])
        }
    }

    @Test func exponentialFanOutStopsInsteadOfHanging() {
        // Each level doubles the work: 2^40 placeholders if nothing stopped it.
        var options: [String: JSONValue] = ["l40": "x"]
        for level in 0..<40 { options["l\(level)"] = .string("{{options.l\(level + 1)}}{{options.l\(level + 1)}}") }
        #expect(throws: TemplateRenderError.self) { try templateRender("{{options.l0}}", options: options) }
    }
}

@Suite("Option templates: renderOptions")
struct TemplateRenderOptionsTests {
    @Test func optionsReferToEachOther() throws {
        let options: [String: JSONValue] = [
            "nodeId": "abc",
            "routingKey": "dhcp.bind.success.{{options.nodeId}}",
            "copy": "{{options.routingKey}}",
            "timeout": 600_000,
            "timeoutCopy": "{{options.timeout}}",
            "payload": ["node": "{{options.nodeId}}", "key": "{{options.copy}}"],
        ]
        let rendered = try OptionTemplate.renderOptions(options, scope: templateScope())
        #expect(rendered["routingKey"] == "dhcp.bind.success.abc")
        #expect(rendered["copy"] == "dhcp.bind.success.abc")
        #expect(rendered["timeoutCopy"] == 600_000)
        #expect(rendered["payload"] == ["node": "abc", "key": "dhcp.bind.success.abc"])
        #expect(rendered["timeout"] == 600_000)
        #expect(rendered.count == options.count)
    }

    @Test func renderOptionsUsesItsOwnOptionsOverTheScopes() throws {
        let scope = templateScope(options: ["who": "stale"])
        let rendered = try OptionTemplate.renderOptions(["who": "fresh", "greeting": "hi {{options.who}}"], scope: scope)
        #expect(rendered["greeting"] == "hi fresh")
    }

    @Test func renderOptionsSeesTheRestOfTheScope() throws {
        let rendered = try OptionTemplate.renderOptions(
            ["key": "{{context.graphName}}.{{task.nodeId}}"], scope: templateScope(context: ["graphName": "g"]))
        #expect(rendered["key"] == "g.node-1")
    }

    @Test func renderOptionsReportsMissingValues() {
        #expect(throws: TemplateRenderError(message: "Value does not exist for options.nodeId")) {
            try OptionTemplate.renderOptions(["nodeId": nil, "routingKey": "dhcp.bind.success.{{options.nodeId}}"], scope: templateScope())
        }
    }

    @Test func emptyOptionsRenderToEmpty() throws {
        #expect(try OptionTemplate.renderOptions([:], scope: templateScope()).isEmpty)
    }
}

@Suite("Option templates: odd input")
struct TemplateOddInputTests {
    @Test func unclosedBracesStayLiteral() throws {
        #expect(try templateRender("{{options.count", options: templateSampleOptions) == "{{options.count")
        #expect(try templateRender("{{", options: templateSampleOptions) == "{{")
        #expect(try templateRender("a {{ b {{options.count}} c", options: templateSampleOptions) == "a {{ b 3 c")
        #expect(try templateRender("{{options.count}} and {{options.count", options: templateSampleOptions) == "3 and {{options.count")
        #expect(try templateRender("}}{{", options: templateSampleOptions) == "}}{{")
        #expect(try templateRender("{{options.count}}}", options: templateSampleOptions) == "3}")
    }

    @Test func emptyPlaceholdersAreMissingValues() {
        #expect(throws: TemplateRenderError(message: "Value does not exist for ")) { try templateRender("{{}}") }
        #expect(throws: TemplateRenderError(message: "Value does not exist for ")) { try templateRender("x{{   }}y") }
        #expect(throws: TemplateRenderError(message: "Value does not exist for |")) { try templateRender("{{ | }}") }
        #expect(throws: TemplateRenderError(message: "Value does not exist for ")) { try templateRender("{{{}}}") }
    }

    @Test func extraBracesAroundATag() throws {
        #expect(try templateRender("{{{{options.name}}}}", options: templateSampleOptions) == "{rack-7}")
        #expect(try templateRender("{{{options.name}}", options: templateSampleOptions) == "{rack-7")
        #expect(try templateRender("{{options.name}}}}", options: templateSampleOptions) == "rack-7}}")
    }

    @Test func commentsVanishAndSectionsAreRefused() throws {
        #expect(try templateRender("a{{! a note }}b") == "ab")
        #expect(throws: TemplateRenderError(message: "Unsupported template tag {{#options.list}}")) {
            try templateRender("{{#options.list}}x{{/options.list}}", options: templateSampleOptions)
        }
        #expect(throws: TemplateRenderError(message: "Unsupported template tag {{> partial}}")) { try templateRender("{{> partial}}") }
        #expect(throws: TemplateRenderError(message: "Unsupported template tag {{=<% %>=}}")) { try templateRender("{{=<% %>=}}") }
    }

    @Test func nonASCIIAroundBraces() throws {
        #expect(try templateRender("é{{options.name}}\u{301}🎉", options: templateSampleOptions) == "érack-7\u{301}🎉")
        // A combining mark right after a brace must not hide it.
        #expect(try templateRender("{{options.name}}\u{301}", options: templateSampleOptions) == "rack-7\u{301}")
        #expect(try templateRender("{\u{301}{options.name}}", options: templateSampleOptions) == "{\u{301}{options.name}}")
    }

    @Test func deeplyNestedValues() throws {
        var value: JSONValue = "{{options.count}}"
        var expected: JSONValue = 3
        for level in 0..<300 {
            value = level.isMultiple(of: 2) ? .array([value]) : .object(["k": value])
            expected = level.isMultiple(of: 2) ? .array([expected]) : .object(["k": expected])
        }
        #expect(try templateRender(value, options: templateSampleOptions) == expected)
    }

    @Test func manyBraces() throws {
        let opening = String(repeating: "{", count: 5_000)
        let closing = String(repeating: "}", count: 5_000)
        #expect(try templateRender(.string(opening)) == .string(opening))
        #expect(try templateRender(.string(closing)) == .string(closing))
        #expect(throws: TemplateRenderError.self) { try templateRender(.string(opening + closing)) }
        // The innermost three braces on each side make a triple tag; the rest stay literal.
        let expected = String(repeating: "{", count: 4_997) + "rack-7" + String(repeating: "}", count: 4_997)
        #expect(try templateRender(.string(opening + "options.name" + closing), options: templateSampleOptions) == .string(expected))
    }

    @Test func containsTemplate() {
        #expect(OptionTemplate.containsTemplate("{{x}}"))
        #expect(OptionTemplate.containsTemplate("a {{ x }} b"))
        #expect(OptionTemplate.containsTemplate("{{}}"))
        #expect(OptionTemplate.containsTemplate("{{{x}}}"))
        #expect(!OptionTemplate.containsTemplate(""))
        #expect(!OptionTemplate.containsTemplate("{{x"))
        #expect(!OptionTemplate.containsTemplate("x}}"))
        #expect(!OptionTemplate.containsTemplate("}}{{"))
        #expect(!OptionTemplate.containsTemplate("{ {x} }"))
    }

    @Test func randomStringsNeverCrash() {
        let pieces = [
            "{", "}", "{{", "}}", "{{{", "}}}", "|", ".", " ", "\n", "options", "context", "task", "nodeId", "graphId", "count",
            "list", "0", "7", "obm", "host", "!", "#", "&", "/", "é", "\u{301}", "🎉", "\"", "\\", "loop", "a",
        ]
        var generator = TemplateFuzzGenerator(state: 0x5EED_0F_7A5C)
        let options = templateSampleOptions.merging(["loop": "{{options.loop}}", "a": "{{ options.count | x }}"]) { _, new in new }
        let scope = templateScope(options: options)
        var rendered = 0
        var refused = 0
        for _ in 0..<3_000 {
            let length = Int.random(in: 0...24, using: &generator)
            let text = (0..<length).map { _ in pieces.randomElement(using: &generator) ?? "" }.joined()
            do {
                let result = try OptionTemplate.render(.string(text), scope: scope)
                rendered += 1
                if !OptionTemplate.containsTemplate(text) { #expect(result == .string(text)) }
            } catch {
                refused += 1
                #expect(OptionTemplate.containsTemplate(text), "only placeholders can fail: \(text)")
            }
        }
        #expect(rendered + refused == 3_000)
        #expect(rendered > 0)
        #expect(refused > 0)
    }

    @Test func randomOptionObjectsNeverCrash() {
        var generator = TemplateFuzzGenerator(state: 42)
        let keys = ["a", "b", "c", "d"]
        let fragments = ["{{options.a}}", "{{options.b}}", "{{ options.c | d }}", "{{options.d.0}}", "x", "{{", "}}", " ", "{{nodeId}}"]
        for _ in 0..<500 {
            var options: [String: JSONValue] = [:]
            for key in keys {
                let text = (0..<Int.random(in: 0...4, using: &generator)).map { _ in fragments.randomElement(using: &generator) ?? "" }
                    .joined()
                options[key] = Bool.random(using: &generator) ? .string(text) : .array([.string(text), 1])
            }
            // Either outcome is fine; the point is that it returns.
            _ = try? OptionTemplate.renderOptions(options, scope: templateScope())
        }
    }
}
