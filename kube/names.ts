// The name and label syntax the apiserver validates, so that input is refused here with a precise
// message instead of by the apiserver (or, worse, passed on).

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** RFC 1123 label: Service names, Namespace names. */
export const isDnsLabel = (s: string): boolean => s.length <= 63 && DNS_LABEL.test(s);

/** RFC 1123 subdomain: most object names, label key prefixes. */
export const isDnsSubdomain = (s: string): boolean => s.length <= 253 && DNS_SUBDOMAIN.test(s);

/** The name part of a label key or annotation key (after the optional `prefix/`). */
export const isQualifiedNamePart = (s: string): boolean => s.length <= 63 && QUALIFIED_NAME_PART.test(s);

/** A label value; the empty string is one. */
export const isLabelValue = (s: string): boolean => s.length <= 63 && LABEL_VALUE.test(s);
