#!/usr/bin/env python3
"""Generates the C++ Kafka message codec from protocol/schema/*.schema (format: protocol/FORMAT.md).

Usage: kafka_codegen.py --schema-dir DIR --out-dir DIR
Writes into OUT/protocol/: messages.h (every message struct, ApiKey, the API table, the request
and response variants), messages_part<0-3>.cc (encode/decode, the APIs spread over four files
of similar size so two cores compile them in parallel), messages_dispatch_{request,response}.cc
(decode by api key), messages_testing.h/.cc (example values for tests).
Python 3 standard library only. Files whose content did not change are not rewritten.
"""
import argparse
import pathlib
import re
import sys

PRIMITIVES = {
    'int8': ('int8_t', 1), 'int16': ('int16_t', 2), 'int32': ('int32_t', 4), 'int64': ('int64_t', 8),
    'uint16': ('uint16_t', 2), 'uint32': ('uint32_t', 4), 'float64': ('double', 8),
    'bool': ('bool', 1), 'uuid': ('Uuid', 16),
}
VARIABLE = {'string': 'std::string', 'bytes': 'std::vector<std::byte>', 'records': 'Records'}
RESERVED = {'read_fields', 'write_fields', 'encode', 'decode', 'min_wire_bytes', 'default', 'class', 'struct',
            'operator', 'new', 'delete', 'register', 'template', 'this', 'union'}
NOT_FLEXIBLE = 32767
SOURCE_PARTS = 4  # messages_part<N>.cc; codec.cmake lists the same number


class SchemaError(Exception):
    pass


def snake(name):
    s = re.sub(r'([A-Z]+)([A-Z][a-z])', r'\1_\2', name)
    s = re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', s)
    return s.lower()


class Field:
    def __init__(self, where, name, type_, vlo, vhi):
        self.where, self.name, self.cname = where, name, snake(name)
        self.is_array = type_.startswith('[]')
        self.base = type_[2:] if self.is_array else type_
        self.vlo, self.vhi = vlo, vhi
        self.nullable = None  # (lo, hi) or None
        self.tag = None
        self.default = None
        self.struct = None  # Struct for struct-typed fields

    @property
    def is_struct(self):
        return self.struct is not None


class Struct:
    def __init__(self, name, vlo, vhi):
        self.name, self.fields, self.vlo, self.vhi = name, [], vlo, vhi


class Message:
    def __init__(self, name, key, lo, hi, flex):
        self.name, self.key, self.lo, self.hi, self.flex = name, key, lo, hi, flex
        self.root = Struct(name, lo, hi)
        self.structs = []  # nested structs, children before parents

    @property
    def api(self):
        return re.sub(r'(Request|Response)$', '', self.name)

    @property
    def is_request(self):
        return self.name.endswith('Request')


def parse_versions(spec, lo, hi, where):
    m = re.fullmatch(r'(\d+)(\+|-(\d+))?', spec)
    if not m:
        raise SchemaError(f'{where}: bad version range {spec!r}')
    a = int(m.group(1))
    if m.group(2) == '+':
        b = hi
    elif m.group(3) is not None:
        b = int(m.group(3))
    else:
        b = a
    if a > b:
        raise SchemaError(f'{where}: empty version range {spec!r}')
    return a, b


def parse_file(path):
    lines = path.read_text().splitlines()
    msg = None
    stack = []  # (indent, Struct)
    for no, raw in enumerate(lines, 1):
        where = f'{path.name}:{no}'
        text = raw.split('#', 1)[0].rstrip()
        if not text.strip():
            continue
        indent = len(text) - len(text.lstrip(' '))
        tokens = text.split()
        if indent == 0:
            if msg is not None:
                raise SchemaError(f'{where}: one message per file')
            attrs = dict(t.split('=', 1) for t in tokens[1:])
            try:
                lo, hi = parse_versions(attrs['versions'], 0, 0, where)
                flex = attrs['flexible']
                key = int(attrs['key'])
            except KeyError as e:
                raise SchemaError(f'{where}: header needs key=, versions=, flexible= ({e})')
            flex = NOT_FLEXIBLE if flex == 'none' else parse_versions(flex, 0, NOT_FLEXIBLE, where)[0]
            msg = Message(tokens[0], key, lo, hi, flex)
            if tokens[0] + '.schema' != path.name:
                raise SchemaError(f'{where}: message {tokens[0]} must live in {tokens[0]}.schema')
            stack = [(0, msg.root)]
            continue
        if msg is None or indent % 2:
            raise SchemaError(f'{where}: field before the header or odd indentation')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not stack or stack[-1][0] != indent - 2:
            raise SchemaError(f'{where}: indentation does not match a struct')
        parent = stack[-1][1]
        if len(tokens) < 3:
            raise SchemaError(f'{where}: expected "Name type versions [attributes]"')
        name, type_, vspec = tokens[:3]
        vlo, vhi = parse_versions(vspec, msg.lo, msg.hi, where)
        if vlo < parent.vlo or vhi > parent.vhi:
            raise SchemaError(f'{where}: versions {vspec} outside the enclosing {parent.name}')
        f = Field(where, name, type_, vlo, vhi)
        f.msg_hi = msg.hi
        for attr in tokens[3:]:
            k, _, v = attr.partition('=')
            if k == 'nullable':
                f.nullable = (vlo, vhi) if not v else parse_versions(v, msg.lo, vhi, where)
            elif k == 'tag':
                f.tag = int(v)
            elif k == 'default':
                f.default = v
            else:
                raise SchemaError(f'{where}: unknown attribute {attr!r}')
        if f.base not in PRIMITIVES and f.base not in VARIABLE:
            if not re.fullmatch(r'[A-Z]\w*', f.base):
                raise SchemaError(f'{where}: unknown type {f.base!r}')
            f.struct = Struct(f.base, vlo, vhi)
            stack.append((indent, f.struct))
        parent.fields.append(f)
    if msg is None:
        raise SchemaError(f'{path.name}: no message header')
    collect(msg, msg.root)
    check(msg)
    return msg


def collect(msg, struct):
    for f in struct.fields:
        if f.is_struct:
            collect(msg, f.struct)
            msg.structs.append(f.struct)


def check(msg):
    names = [s.name for s in msg.structs]
    for n in names:
        if names.count(n) > 1 or n == msg.name:
            raise SchemaError(f'{msg.name}: struct name {n} used twice')
    for s in [msg.root] + msg.structs:
        tags, cnames = set(), set()
        for f in s.fields:
            if f.cname in RESERVED or f.cname in cnames:
                raise SchemaError(f'{f.where}: member name {f.cname} is reserved or repeated')
            cnames.add(f.cname)
            if f.is_struct and not f.struct.fields:
                raise SchemaError(f'{f.where}: struct {f.base} has no fields')
            if f.nullable and not (f.is_array or f.base in VARIABLE):
                raise SchemaError(f'{f.where}: only strings, bytes, records and arrays are nullable')
            if f.base == 'records' and f.is_array:
                raise SchemaError(f'{f.where}: arrays of records are not supported')
            if f.tag is not None:
                if f.tag in tags:
                    raise SchemaError(f'{f.where}: tag {f.tag} used twice')
                tags.add(f.tag)
                if f.vlo < msg.flex:
                    raise SchemaError(f'{f.where}: tagged field in a non-flexible version')
                if f.base == 'records':
                    raise SchemaError(f'{f.where}: tagged records are not supported')
            if f.is_struct and f.is_array and f.struct.fields:
                # An element must take at least one byte in every version (bounds array counts).
                for v in range(f.vlo, f.vhi + 1):
                    if v < msg.flex and not any(g.vlo <= v <= g.vhi and g.tag is None
                                                for g in f.struct.fields):
                        raise SchemaError(f'{f.where}: element {f.base} is empty in v{v}')
            if f.default is not None and (f.is_array or f.base in VARIABLE):
                if not f.nullable or f.default not in ('null', 'empty'):
                    raise SchemaError(f'{f.where}: strings, bytes, records and arrays take only '
                                      'default=null or default=empty, and only when nullable')


# ---------------------------------------------------------------- C++ text helpers

def cpp_elem_type(f):
    if f.is_struct:
        return f.struct.name
    if f.base in PRIMITIVES:
        return PRIMITIVES[f.base][0]
    return VARIABLE[f.base]


def cpp_type(f):
    t = cpp_elem_type(f)
    if f.is_array:
        t = f'std::vector<{t}>'
    if f.nullable and f.base != 'records':
        t = f'std::optional<{t}>'
    return t


def cpp_default(f):
    if f.default == 'empty':  # a nullable field that starts empty rather than null
        return 'Records::borrowed({})' if f.base == 'records' else f'{cpp_type(f)}(std::in_place)'
    if f.is_array or f.is_struct or f.base in VARIABLE or f.base == 'uuid':
        return None
    d = f.default
    if f.base == 'bool':
        return 'true' if d == 'true' else 'false' if d in (None, 'false') else bad_default(f)
    if d is None:
        return '0'
    try:
        value = int(d, 0)
    except ValueError:
        return bad_default(f)
    bits = {'int8': 8, 'int16': 16, 'int32': 32, 'int64': 64}.get(f.base)
    if bits and value == -(1 << (bits - 1)):
        return f'INT{bits}_MIN'
    return str(value) + ('LL' if f.base == 'int64' and abs(value) > 2**31 else '')


def bad_default(f):
    raise SchemaError(f'{f.where}: bad default {f.default!r} for {f.base}')


def vcond(lo, hi, within_lo, within_hi):
    """C++ condition on `v` for lo..hi, given that v is already within_lo..within_hi."""
    parts = []
    if lo > within_lo:
        parts.append(f'v >= {lo}')
    if hi < within_hi:
        parts.append(f'v <= {hi}')
    return ' && '.join(parts)


def nullable_expr(f):
    if not f.nullable:
        return 'false'
    c = vcond(f.nullable[0], f.nullable[1], f.vlo, f.vhi)
    return c if c else 'true'


def is_nullable_call(f):
    return bool(f.nullable) or f.base == 'records'


def put_call(f, w):
    if f.base == 'records':
        return f'detail::put_nullable({w}, {f.cname}, {nullable_expr(f)})'
    if f.nullable and f.is_array:
        return f'detail::put_nullable({w}, {f.cname}, {nullable_expr(f)}, v)'
    if f.nullable:
        return f'detail::put_nullable({w}, {f.cname}, {nullable_expr(f)})'
    return f'detail::put({w}, {f.cname}, v)'


def get_call(f, r):
    if f.base == 'records' or (f.nullable and not f.is_array):
        return f'detail::get_nullable({r}, {f.cname}, {nullable_expr(f)}, "{f.cname}")'
    if f.nullable:
        return f'detail::get_nullable({r}, {f.cname}, {nullable_expr(f)}, v, "{f.cname}")'
    return f'detail::get({r}, {f.cname}, v, "{f.cname}")'


def min_bytes_expr(f):
    if f.tag is not None:
        return None
    if f.is_array or f.base in ('bytes', 'records'):
        e = '(flexible ? 1 : 4)'
    elif f.base == 'string':
        e = '(flexible ? 1 : 2)'
    elif f.is_struct:
        e = f'{f.struct.name}::min_wire_bytes(v, flexible)'
    else:
        e = str(PRIMITIVES[f.base][1])
    return e


# ---------------------------------------------------------------- header

def gen_struct_decl(s, out, indent, top=None):
    p = ' ' * indent
    out.append(f'{p}struct {s.name} {{')
    if top is not None:
        m = top
        key = api_enum(m.api)
        out.append(f'{p}  static constexpr ApiKey kApiKey = ApiKey::{key};')
        out.append(f'{p}  static constexpr std::string_view kName = "{m.name}";')
        out.append(f'{p}  static constexpr int16_t kMinVersion = {m.lo};')
        out.append(f'{p}  static constexpr int16_t kMaxVersion = {m.hi};')
        out.append(f'{p}  static constexpr int16_t kFlexibleFrom = {m.flex};')
        out.append('')
        for child in m.structs:
            gen_struct_decl(child, out, indent + 2)
            out.append('')
    for f in s.fields:
        d = cpp_default(f)
        comment = field_comment(f)
        init = f' = {d}' if d is not None else ''
        out.append(f'{p}  {cpp_type(f)} {f.cname}{init};{comment}')
    out.append('')
    out.append(f'{p}  bool operator==(const {s.name}&) const = default;')
    if top is not None:
        out.append(f'{p}  // The body in `version` (kMinVersion..kMaxVersion; asserted).')
        out.append(f'{p}  void encode(Writer& w, int16_t version) const;')
        out.append(f'{p}  // Reads the body; fails on unsupported versions and bad bytes.')
        out.append(f'{p}  static Result<{s.name}, DecodeError> decode(Reader& r, int16_t version);')
    out.append(f'{p}  void write_fields(Writer& w, int16_t v) const;  // codec internals')
    out.append(f'{p}  bool read_fields(Reader& r, int16_t v);')
    out.append(f'{p}  static size_t min_wire_bytes(int16_t v, bool flexible);')
    out.append(f'{p}}};')


def field_comment(f):
    def rng(lo, hi):
        return f'v{lo}+' if hi == f.msg_hi else f'v{lo}' if lo == hi else f'v{lo}-{hi}'
    bits = [rng(f.vlo, f.vhi)]
    if f.nullable:
        bits.append('nullable' + ('' if f.nullable == (f.vlo, f.vhi) else ' ' + rng(*f.nullable)))
    if f.tag is not None:
        bits.append(f'tag {f.tag}')
    return '  // ' + ', '.join(bits)


def api_enum(api):
    return 'k' + api


def gen_header(msgs, apis):
    out = [
        '// Generated by protocol/gen/kafka_codegen.py from protocol/schema/*.schema. Do not edit.',
        '// Every Kafka message Sluice encodes and decodes, the API table and dispatch by api key.',
        '#pragma once', '',
        '#include <array>', '#include <cstdint>', '#include <optional>', '#include <string>',
        '#include <string_view>', '#include <variant>', '#include <vector>', '',
        '#include "common/result.h"', '#include "protocol/codec.h"', '',
        'namespace sluice::kafka {', '',
        'enum class ApiKey : int16_t {',
    ]
    for api, (req, _) in apis:
        out.append(f'  {api_enum(api)} = {req.key},')
    out += ['};', '',
            '// kFlexibleFrom of an API whose versions are all classic (non-flexible).',
            f'inline constexpr int16_t kNotFlexible = {NOT_FLEXIBLE};', '',
            'struct ApiInfo {', '  ApiKey key;', '  std::string_view name;',
            '  int16_t min_version;', '  int16_t max_version;',
            '  int16_t flexible_from;  // first flexible version (open-ended), or kNotFlexible',
            '};', '',
            '// Every API the codec implements, ascending by key.',
            f'inline constexpr std::array<ApiInfo, {len(apis)}> kSupportedApis{{{{']
    for api, (req, resp) in apis:
        out.append(f'    {{ApiKey::{api_enum(api)}, "{api}", {req.lo}, {req.hi}, {req.flex}}},')
    out += ['}};', '',
            '// The entry for `api_key`, or nullptr if the codec does not implement it.',
            'const ApiInfo* find_api(int16_t api_key);', '']
    for m in msgs:
        gen_struct_decl(m.root, out, 0, top=m)
        out.append('')
    reqs = ', '.join(r.name for _, (r, _) in apis)
    resps = ', '.join(s.name for _, (_, s) in apis)
    out += [
        '// A request or response body of any API (alternatives in ascending key order).',
        f'using RequestBody = std::variant<{reqs}>;',
        f'using ResponseBody = std::variant<{resps}>;', '',
        '// Decodes the body of a request/response of `key` at `version`: kUnknownApi or',
        '// kUnsupportedVersion outside kSupportedApis, else the first bad field. Trailing bytes',
        '// after the body are ignored, as Kafka does. Records fields point into `body`.',
        'Result<RequestBody, DecodeError> decode_request(ApiKey key, int16_t version, Bytes body);',
        'Result<ResponseBody, DecodeError> decode_response(ApiKey key, int16_t version, Bytes body);',
        'ApiKey api_key_of(const RequestBody& body);',
        'ApiKey api_key_of(const ResponseBody& body);',
        'void encode_body(Writer& w, const RequestBody& body, int16_t version);',
        'void encode_body(Writer& w, const ResponseBody& body, int16_t version);', '',
        'namespace detail {',
        'template <class T>',
        'void encode_message(const T& message, Writer& w, int16_t version) {',
        '  SLUICE_ASSERT(version >= T::kMinVersion && version <= T::kMaxVersion);',
        '  const bool was_flexible = w.flexible();',
        '  w.set_flexible(version >= T::kFlexibleFrom);',
        '  message.write_fields(w, version);',
        '  w.set_flexible(was_flexible);',
        '}',
        'DecodeError unsupported_version(std::string_view name, int16_t version, int16_t min,',
        '                                int16_t max);',
        'DecodeError unknown_api(ApiKey key);',
        'template <class T>',
        'Result<T, DecodeError> decode_message(Reader& r, int16_t version) {',
        '  if (version < T::kMinVersion || version > T::kMaxVersion) {',
        '    return unexpected(unsupported_version(T::kName, version, T::kMinVersion, T::kMaxVersion));',
        '  }',
        '  const bool was_flexible = r.flexible();',
        '  r.set_flexible(version >= T::kFlexibleFrom);',
        '  T message;',
        '  const bool ok = message.read_fields(r, version);',
        '  r.set_flexible(was_flexible);',
        '  if (!ok) {',
        '    r.prefix_path(T::kName);',
        '    return unexpected(r.take_error());',
        '  }',
        '  return message;',
        '}',
        '}  // namespace detail', '',
        '}  // namespace sluice::kafka', '']
    return '\n'.join(out)


# ---------------------------------------------------------------- per-API source

def gen_struct_defs(m, s, out):
    q = f'{m.name}::{s.name}' if s is not m.root else m.name
    lo, hi = s.vlo, s.vhi
    regular = [f for f in s.fields if f.tag is None]
    tagged = sorted((f for f in s.fields if f.tag is not None), key=lambda f: f.tag)
    # write
    out.append(f'void {q}::write_fields(Writer& w, [[maybe_unused]] int16_t v) const {{')
    for f in regular:
        c = vcond(f.vlo, f.vhi, lo, hi)
        out.append(f'  {"if (" + c + ") " if c else ""}{put_call(f, "w")};')
    if tagged:
        out.append('  if (!w.flexible()) return;')
        out.append(f'  static const {q} kDefaults;')
        for i, f in enumerate(tagged):
            c = vcond(f.vlo, f.vhi, lo, hi)
            out.append(f'  const bool t{i} = {c + " && " if c else ""}!({f.cname} == kDefaults.{f.cname});')
        out.append('  w.uvarint(' + ' + '.join(f'uint32_t{{t{i}}}' for i in range(len(tagged))) + ');')
        for i, f in enumerate(tagged):
            out.append(f'  if (t{i}) w.tagged({f.tag}, [&](Writer& t) {{ {put_call(f, "t")}; }});')
    else:
        out.append('  if (w.flexible()) w.empty_tags();')
    out.append('}')
    out.append('')
    # read
    out.append(f'bool {q}::read_fields(Reader& r, [[maybe_unused]] int16_t v) {{')
    for f in regular:
        c = vcond(f.vlo, f.vhi, lo, hi)
        out.append(f'  if ({c + " && " if c else ""}!{get_call(f, "r")}) return false;')
    if tagged:
        out.append('  if (!r.flexible()) return true;')
        out.append('  return r.tags([&](uint32_t tag, Reader& t) {')
        out.append('    switch (tag) {')
        for f in tagged:
            c = vcond(f.vlo, f.vhi, lo, hi)
            skip = f'!({c}) || ' if c else ''
            out.append(f'      case {f.tag}: return {skip}{get_call(f, "t")};')
        out.append('      default: return true;  // unknown tags are skipped')
        out.append('    }')
        out.append('  }, "tagged_fields");')
    else:
        out.append('  return !r.flexible() || r.skip_tags("tagged_fields");')
    out.append('}')
    out.append('')
    # min_bytes
    terms = []
    for f in regular:
        e = min_bytes_expr(f)
        c = vcond(f.vlo, f.vhi, lo, hi)
        terms.append(f'({c} ? {e} : 0)' if c else e)
    body = ' + '.join(['(flexible ? 1 : 0)'] + terms)
    out.append(f'size_t {q}::min_wire_bytes([[maybe_unused]] int16_t v, bool flexible) {{')
    out.append(f'  return {body};')
    out.append('}')
    out.append('')


def gen_api_source(pairs):
    out = ['// Generated by protocol/gen/kafka_codegen.py from protocol/schema. Do not edit.',
           '#include "protocol/messages.h"', '', 'namespace sluice::kafka {', '']
    for req, resp in pairs:
        for m in (req, resp):
            for s in m.structs:
                gen_struct_defs(m, s, out)
            gen_struct_defs(m, m.root, out)
            out.append(f'void {m.name}::encode(Writer& w, int16_t version) const {{')
            out.append('  detail::encode_message(*this, w, version);')
            out.append('}')
            out.append(f'Result<{m.name}, DecodeError> {m.name}::decode(Reader& r, int16_t version) {{')
            out.append(f'  return detail::decode_message<{m.name}>(r, version);')
            out.append('}')
            out.append('')
    out += ['}  // namespace sluice::kafka', '']
    return '\n'.join(out)


def split_parts(apis, count):
    """Spreads the APIs over `count` source files of similar size (compile time on 2 cores)."""
    parts = [[] for _ in range(count)]
    sizes = [0] * count
    weight = lambda pair: sum(len(m.structs) + 1 + count_fields(m.root) for m in pair)
    for _, pair in sorted(apis, key=lambda a: -weight(a[1])):
        i = sizes.index(min(sizes))
        parts[i].append(pair)
        sizes[i] += weight(pair)
    return parts


def count_fields(struct):
    return sum(1 + (count_fields(f.struct) if f.is_struct else 0) for f in struct.fields)


def gen_dispatch(apis, kind):
    var, idx = ('RequestBody', 0) if kind == 'request' else ('ResponseBody', 1)
    out = ['// Generated by protocol/gen/kafka_codegen.py from protocol/schema. Do not edit.',
           '#include <string>', '', '#include "protocol/messages.h"', '',
           'namespace sluice::kafka {', '']
    if kind == 'request':
        out += ['const ApiInfo* find_api(int16_t api_key) {',
                '  for (const ApiInfo& info : kSupportedApis) {',
                '    if (static_cast<int16_t>(info.key) == api_key) return &info;',
                '  }',
                '  return nullptr;',
                '}', '',
                'namespace detail {',
                'DecodeError unsupported_version(std::string_view name, int16_t version, int16_t min,',
                '                                int16_t max) {',
                '  return DecodeError{DecodeErrc::kUnsupportedVersion, std::string(name),',
                '                     "version " + std::to_string(version) + " not in " +',
                '                         std::to_string(min) + "-" + std::to_string(max)};',
                '}',
                'DecodeError unknown_api(ApiKey key) {',
                '  return DecodeError{DecodeErrc::kUnknownApi, "api_key",',
                '                     "api key " + std::to_string(static_cast<int16_t>(key)) +',
                '                         " is not supported"};',
                '}',
                '}  // namespace detail', '']
    limit = ['  r.limit_array_elements(kRequestArrayElementsMax);'] if kind == 'request' else []
    out += ['namespace {',
            'template <class T>',
            f'Result<{var}, DecodeError> decode_as(int16_t version, Bytes body) {{',
            '  Reader r(body);'] + limit + [
            '  auto m = T::decode(r, version);',
            '  if (!m) return unexpected(std::move(m).error());',
            f'  return {var}(std::in_place_type<T>, std::move(*m));',
            '}',
            '}  // namespace', '']
    out.append(f'Result<{var}, DecodeError> decode_{kind}(ApiKey key, int16_t version, Bytes body) {{')
    out.append('  switch (key) {')
    for api, pair in apis:
        out.append(f'    case ApiKey::{api_enum(api)}:')
        out.append(f'      return decode_as<{pair[idx].name}>(version, body);')
    out.append('  }')
    out.append('  return unexpected(detail::unknown_api(key));')
    out.append('}')
    out.append('')
    out.append(f'ApiKey api_key_of(const {var}& body) {{')
    out.append('  return std::visit([](const auto& m) { return m.kApiKey; }, body);')
    out.append('}')
    out.append('')
    out.append(f'void encode_body(Writer& w, const {var}& body, int16_t version) {{')
    out.append('  std::visit([&](const auto& m) { m.encode(w, version); }, body);')
    out.append('}')
    out.append('')
    out += ['}  // namespace sluice::kafka', '']
    return '\n'.join(out)


# ---------------------------------------------------------------- test support

def gen_testing_header():
    return '\n'.join([
        '// Generated by protocol/gen/kafka_codegen.py. Example messages for tests and corpora.',
        '#pragma once', '', '#include "protocol/messages.h"', '',
        'namespace sluice::kafka::testing {', '',
        '// kValues: every field present in the version gets a value different from its default.',
        '// kNulls: the same, but fields nullable in the version are null.',
        'enum class FillMode : uint8_t { kValues, kNulls };', '',
        '// An example body of `key` at `version`. With all_fields, fields absent in the version',
        '// are filled too (an encoder must drop them: they decode as their defaults).',
        'RequestBody example_request(ApiKey key, int16_t version, FillMode mode, bool all_fields);',
        'ResponseBody example_response(ApiKey key, int16_t version, FillMode mode, bool all_fields);',
        '', '}  // namespace sluice::kafka::testing', ''])


def gen_testing_source(msgs, apis):
    out = ['// Generated by protocol/gen/kafka_codegen.py. Do not edit.',
           '#include "protocol/messages_testing.h"', '',
           '#include <string>', '', 'namespace sluice::kafka::testing {', 'namespace {', '',
           'const std::byte kRecordBytes[] = {std::byte{0x52}, std::byte{0x45}, std::byte{0x43},',
           '                                  std::byte{0x4f}, std::byte{0x52}, std::byte{0x44}};',
           '',
           '// Hands out distinct values; every field consumes one whether or not it is kept, so',
           '// filling with and without absent fields stays in step.',
           'struct Filler {',
           '  FillMode mode;', '  bool all;', '  uint32_t n = 0;',
           '  template <class T>',
           '  void scalar(T& dst, bool present, T def) {',
           '    T value;',
           '    if constexpr (std::is_same_v<T, bool>) {',
           '      value = !def;',
           '    } else if constexpr (std::is_floating_point_v<T>) {',
           '      value = def + 1.5 + n % 100;',
           '    } else {  // wraps (no overflow) for defaults such as INT32_MAX',
           '      value = static_cast<T>(static_cast<uint64_t>(def) + 1 + n % 100);',
           '    }',
           '    ++n;',
           '    if (present || all) dst = value;',
           '  }',
           '  void scalar(Uuid& dst, bool present, Uuid) {',
           '    Uuid value;',
           '    value.bytes[0] = static_cast<std::byte>(++n);',
           '    if (present || all) dst = value;',
           '  }',
           '  std::string text() { return "s" + std::to_string(++n); }',
           '  std::vector<std::byte> blob() { return {std::byte{1}, static_cast<std::byte>(++n)}; }',
           '  void scalar(std::string& dst, bool present, const std::string&) {',
           '    std::string v = text();',
           '    if (present || all) dst = v;',
           '  }',
           '  void scalar(std::vector<std::byte>& dst, bool present, const std::vector<std::byte>&) {',
           '    auto v = blob();',
           '    if (present || all) dst = v;',
           '  }',
           '  template <class T>',
           '  void nullable(std::optional<T>& dst, bool present, bool nullable_here, T value) {',
           '    if (!(present || all)) return;',
           '    if (mode == FillMode::kNulls && nullable_here) {',
           '      dst.reset();',
           '    } else {',
           '      dst = std::move(value);',
           '    }',
           '  }',
           '  void records(Records& dst, bool present, bool nullable_here) {',
           '    ++n;',
           '    if (!(present || all)) return;',
           '    dst = mode == FillMode::kNulls && nullable_here ? Records()',
           '                                                    : Records::borrowed(kRecordBytes);',
           '  }',
           '};', '']
    # forward declarations
    for m in msgs:
        for s in m.structs + [m.root]:
            q = f'{m.name}::{s.name}' if s is not m.root else m.name
            out.append(f'void fill(Filler& f, {q}& x, int16_t v);')
    out.append('')
    for m in msgs:
        for s in m.structs + [m.root]:
            q = f'{m.name}::{s.name}' if s is not m.root else m.name
            out.append(f'void fill([[maybe_unused]] Filler& f, [[maybe_unused]] {q}& x, [[maybe_unused]] int16_t v) {{')
            for f in s.fields:
                present = vcond(f.vlo, f.vhi, 0, 32767) or 'true'
                nul = nullable_expr(f)
                if f.base == 'records':
                    out.append(f'  f.records(x.{f.cname}, {present}, {nul});')
                    continue
                elem = cpp_elem_type(f)
                if f.is_struct:
                    elem = f'{m.name}::{elem}'
                if f.is_array:
                    if f.is_struct:
                        make = (f'std::vector<{elem}> tmp(2); for (auto& e : tmp) fill(f, e, v);')
                    elif f.base in VARIABLE:
                        make = (f'std::vector<{elem}> tmp{{f.{"text" if f.base == "string" else "blob"}(), '
                                f'f.{"text" if f.base == "string" else "blob"}()}};')
                    else:
                        make = (f'std::vector<{elem}> tmp(2); for (auto& e : tmp) '
                                f'f.scalar(e, true, {elem}{{}});')
                    if f.nullable:
                        out.append(f'  {{ {make} f.nullable(x.{f.cname}, ({present}), {nul}, std::move(tmp)); }}')
                    else:
                        out.append(f'  {{ {make} if (({present}) || f.all) x.{f.cname} = std::move(tmp); }}')
                elif f.is_struct:
                    out.append(f'  {{ {elem} tmp; fill(f, tmp, v); if (({present}) || f.all) x.{f.cname} = std::move(tmp); }}')
                elif f.nullable:
                    gen = 'f.text()' if f.base == 'string' else 'f.blob()'
                    out.append(f'  f.nullable(x.{f.cname}, {present}, {nul}, {gen});')
                else:
                    d = cpp_default(f)
                    out.append(f'  f.scalar(x.{f.cname}, {present}, {elem}{{{d or ""}}});')
            out.append('}')
            out.append('')
    out.append('}  // namespace')
    out.append('')
    for kind, var, idx in (('request', 'RequestBody', 0), ('response', 'ResponseBody', 1)):
        out.append(f'{var} example_{kind}(ApiKey key, int16_t version, FillMode mode, bool all_fields) {{')
        out.append('  Filler f{mode, all_fields};')
        out.append('  switch (key) {')
        for api, pair in apis:
            name = pair[idx].name
            out.append(f'    case ApiKey::{api_enum(api)}: {{')
            out.append(f'      {name} x;')
            out.append('      fill(f, x, version);')
            out.append(f'      return {var}(std::move(x));')
            out.append('    }')
        out.append('  }')
        out.append('  SLUICE_UNREACHABLE();')
        out.append('}')
        out.append('')
    out += ['}  // namespace sluice::kafka::testing', '']
    return '\n'.join(out)


# ---------------------------------------------------------------- main

def write_if_changed(path, text):
    if path.exists() and path.read_text() == text:
        return
    path.write_text(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--schema-dir', required=True, type=pathlib.Path)
    ap.add_argument('--out-dir', required=True, type=pathlib.Path)
    args = ap.parse_args()
    try:
        msgs = [parse_file(p) for p in sorted(args.schema_dir.glob('*.schema'))]
        by_api = {}
        for m in msgs:
            by_api.setdefault(m.api, {})['req' if m.is_request else 'resp'] = m
        apis = []
        for api, pair in by_api.items():
            if set(pair) != {'req', 'resp'}:
                raise SchemaError(f'{api}: needs both a Request and a Response schema')
            req, resp = pair['req'], pair['resp']
            if (req.key, req.lo, req.hi, req.flex) != (resp.key, resp.lo, resp.hi, resp.flex):
                raise SchemaError(f'{api}: request and response disagree on key/versions/flexible')
            apis.append((api, (req, resp)))
        apis.sort(key=lambda a: a[1][0].key)
        msgs = [m for _, pair in apis for m in pair]
    except SchemaError as e:
        print(f'kafka_codegen: {e}', file=sys.stderr)
        return 1
    out = args.out_dir / 'protocol'
    out.mkdir(parents=True, exist_ok=True)
    write_if_changed(out / 'messages.h', gen_header(msgs, apis))
    for i, pairs in enumerate(split_parts(apis, SOURCE_PARTS)):
        write_if_changed(out / f'messages_part{i}.cc', gen_api_source(pairs))
    for kind in ('request', 'response'):
        write_if_changed(out / f'messages_dispatch_{kind}.cc', gen_dispatch(apis, kind))
    write_if_changed(out / 'messages_testing.h', gen_testing_header())
    write_if_changed(out / 'messages_testing.cc', gen_testing_source(msgs, apis))
    return 0


if __name__ == '__main__':
    sys.exit(main())
