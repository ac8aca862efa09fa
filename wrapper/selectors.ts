// Label and field selectors as the kube-apiserver accepts them in `labelSelector` and
// `fieldSelector` query parameters. Parse errors carry a message precise enough to fix the query,
// because they become the body of a 400 response.
import { isDnsSubdomain, isLabelValue, isQualifiedNamePart } from '../kube/names.ts';

export class SelectorError extends Error {}

export type LabelOperator = 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';

export interface LabelRequirement {
  key: string;
  op: LabelOperator;
  values: string[];
}

export type Labels = Record<string, string> | undefined;

function checkKey(key: string): void {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && !isDnsSubdomain(prefix)) {
    throw new SelectorError(`invalid label key "${key}": prefix part must be a DNS subdomain`);
  }
  if (!isQualifiedNamePart(name)) {
    throw new SelectorError(
      `invalid label key "${key}": name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`,
    );
  }
}

function checkValue(key: string, value: string): void {
  if (!isLabelValue(value)) {
    throw new SelectorError(
      `invalid label value "${value}" for key "${key}": must be at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`,
    );
  }
}

type Token = { kind: 'id' | 'op' | '(' | ')' | ','; text: string; pos: number };

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const c = input[i]!;
    if (c === ' ' || c === '\t') {
      i++;
    } else if (c === '(' || c === ')' || c === ',') {
      tokens.push({ kind: c, text: c, pos: i });
      i++;
    } else if (c === '!' || c === '=' || c === '<' || c === '>') {
      const two = input.slice(i, i + 2);
      const text = two === '==' || two === '!=' ? two : c;
      tokens.push({ kind: 'op', text, pos: i });
      i += text.length;
    } else if (/[A-Za-z0-9._/-]/.test(c)) {
      let j = i;
      while (j < input.length && /[A-Za-z0-9._/-]/.test(input[j]!)) j++;
      tokens.push({ kind: 'id', text: input.slice(i, j), pos: i });
      i = j;
    } else {
      throw new SelectorError(`unable to parse label selector "${input}": unexpected character '${c}' at position ${i}`);
    }
  }
  return tokens;
}

/** Parses a label selector; an empty string selects everything. */
export function parseLabelSelector(input: string): LabelRequirement[] {
  const tokens = tokenize(input);
  const reqs: LabelRequirement[] = [];
  let i = 0;
  const where = (t: Token | undefined) => (t ? `'${t.text}' at position ${t.pos}` : 'end of selector');
  const fail = (what: string, t: Token | undefined): never => {
    throw new SelectorError(`unable to parse label selector "${input}": expected ${what}, found ${where(t)}`);
  };
  const parseValues = (key: string): string[] => {
    if (tokens[i]?.kind !== '(') fail("'(' after set operator", tokens[i]);
    i++;
    const values: string[] = [];
    for (;;) {
      const t = tokens[i];
      if (t?.kind === ')' && values.length === 0) fail('at least one value in the set', t);
      if (t?.kind === 'id') {
        checkValue(key, t.text);
        values.push(t.text);
        i++;
      } else if (t?.kind === ',' || t?.kind === ')') {
        // An empty value ("a in (x,)") is allowed by the apiserver.
        values.push('');
      } else {
        fail('a value or ")"', t);
      }
      const sep = tokens[i];
      if (sep?.kind === ')') {
        i++;
        return values;
      }
      if (sep?.kind !== ',') fail("',' or ')' in value set", sep);
      i++;
    }
  };
  while (i < tokens.length) {
    const first = tokens[i]!;
    if (first.kind === 'op' && first.text === '!') {
      const key = tokens[i + 1];
      if (key?.kind !== 'id') fail("a label key after '!'", key);
      checkKey(key!.text);
      reqs.push({ key: key!.text, op: '!exists', values: [] });
      i += 2;
    } else if (first.kind === 'id') {
      checkKey(first.text);
      const op = tokens[i + 1];
      i += 2;
      if (!op || op.kind === ',') {
        reqs.push({ key: first.text, op: 'exists', values: [] });
        i--;
      } else if (op.kind === 'op' && (op.text === '=' || op.text === '==' || op.text === '!=')) {
        const v = tokens[i];
        let value = '';
        if (v?.kind === 'id') {
          value = v.text;
          i++;
        } else if (v && v.kind !== ',') {
          fail(`a value after '${op.text}'`, v);
        }
        checkValue(first.text, value);
        reqs.push({ key: first.text, op: op.text === '!=' ? '!=' : '=', values: [value] });
      } else if (op.kind === 'op' && (op.text === '<' || op.text === '>')) {
        const v = tokens[i];
        if (v?.kind !== 'id' || !/^-?\d+$/.test(v.text)) fail(`an integer after '${op.text}'`, v);
        reqs.push({ key: first.text, op: op.text === '<' ? 'lt' : 'gt', values: [v!.text] });
        i++;
      } else if (op.kind === 'id' && (op.text === 'in' || op.text === 'notin')) {
        reqs.push({ key: first.text, op: op.text, values: parseValues(first.text) });
      } else {
        fail("an operator ('=', '==', '!=', 'in', 'notin', '<', '>') or ','", op);
      }
    } else {
      fail('a label key or "!"', first);
    }
    const sep = tokens[i];
    if (sep === undefined) break;
    if (sep.kind !== ',') fail("','", sep);
    i++;
    if (i >= tokens.length) fail('a requirement after ","', undefined);
  }
  return reqs;
}

export function matchesLabels(reqs: LabelRequirement[], labels: Labels): boolean {
  for (const r of reqs) {
    const has = labels !== undefined && Object.hasOwn(labels, r.key);
    const v = has ? labels![r.key]! : undefined;
    switch (r.op) {
      case 'exists':
        if (!has) return false;
        break;
      case '!exists':
        if (has) return false;
        break;
      case '=':
      case 'in':
        if (!has || !r.values.includes(v!)) return false;
        break;
      case '!=':
      case 'notin':
        if (has && r.values.includes(v!)) return false;
        break;
      case 'gt':
      case 'lt': {
        if (!has || !/^-?\d+$/.test(v!)) return false;
        const n = Number(v);
        const bound = Number(r.values[0]);
        if (r.op === 'gt' ? !(n > bound) : !(n < bound)) return false;
        break;
      }
    }
  }
  return true;
}

export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

/** Splits on unescaped `sep`, as the apiserver's field selector parser does. */
function splitUnescaped(s: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === sep) {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

function unescapeValue(s: string, input: string): string {
  return s.replace(/\\(.)/g, (_m, c: string) => {
    if (c === '\\' || c === ',' || c === '=') return c;
    throw new SelectorError(`invalid field selector "${input}": invalid escape sequence "\\${c}"`);
  });
}

/**
 * Parses a field selector, accepting only fields in `supported` (the apiserver answers 400
 * "field label not supported" for others, and so do we).
 */
export function parseFieldSelector(input: string, supported: readonly string[]): FieldRequirement[] {
  if (input.trim() === '') return [];
  const reqs: FieldRequirement[] = [];
  for (const part of splitUnescaped(input, ',')) {
    const m = /^([^=!]*?)\s*(==|!=|=)(.*)$/s.exec(part);
    if (!m) throw new SelectorError(`invalid field selector "${input}": "${part}" has no operator ('=', '==' or '!=')`);
    const field = m[1]!.trim();
    if (field === '') throw new SelectorError(`invalid field selector "${input}": "${part}" has no field name`);
    if (!supported.includes(field)) {
      throw new SelectorError(`field label not supported: ${field} (supported: ${supported.join(', ')})`);
    }
    reqs.push({ field, op: m[2] === '!=' ? '!=' : '=', value: unescapeValue(m[3]!, input) });
  }
  return reqs;
}

export function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[p];
  }
  if (cur === undefined || cur === null) return '';
  return String(cur);
}

export function matchesFields(reqs: FieldRequirement[], obj: unknown): boolean {
  for (const r of reqs) {
    const v = fieldValue(obj, r.field);
    if (r.op === '=' ? v !== r.value : v === r.value) return false;
  }
  return true;
}
