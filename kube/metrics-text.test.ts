import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapeLabelValue, formatLabels, MetricFamilies } from './metrics-text.ts';

test('label values are escaped as the exposition format requires', () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  assert.equal(formatLabels({ resource: 'x"}\n# TYPE evil counter' }), '{resource="x\\"}\\n# TYPE evil counter"}');
  assert.equal(formatLabels({ b: '2', a: '1' }), '{a="1",b="2"}');
  assert.equal(formatLabels({}), '');
  assert.throws(() => formatLabels({ 'bad-name': 'x' }), /invalid Prometheus label name "bad-name"/);
});

test('families render HELP, TYPE and one line per series; a hostile value stays on its line', () => {
  const m = new MetricFamilies();
  m.add('requests_total', 'counter', 'Requests.\nSecond line \\ here.', { reason: 'a"b' }, 1);
  m.add('requests_total', 'counter', 'Requests.', { reason: 'a"b' }, 2);
  m.set('up', 'gauge', 'Up.', {}, 1);
  const s = m.sample('lines_total', 'counter', 'Lines.', { resource: 'services' });
  s.value += 5;
  assert.equal(m.get('requests_total', { reason: 'a"b' }), 3);
  assert.equal(
    m.render(),
    [
      '# HELP requests_total Requests.\\nSecond line \\\\ here.',
      '# TYPE requests_total counter',
      'requests_total{reason="a\\"b"} 3',
      '# HELP up Up.',
      '# TYPE up gauge',
      'up 1',
      '# HELP lines_total Lines.',
      '# TYPE lines_total counter',
      'lines_total{resource="services"} 5',
      '',
    ].join('\n'),
  );
  assert.throws(() => m.set('bad-name', 'gauge', 'x', {}, 1), /invalid Prometheus metric name/);
});
