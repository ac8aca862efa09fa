import assert from 'node:assert/strict';
import { test } from 'node:test';
import { leaderElectionConfigProblem } from './leader.ts';

test('lease timings are checked as client-go checks them', () => {
  const ok = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };
  assert.equal(leaderElectionConfigProblem(ok), undefined);
  assert.equal(leaderElectionConfigProblem({ leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 1_000 }), undefined);
  assert.match(
    leaderElectionConfigProblem({ ...ok, renewDeadlineMs: 15_000 })!,
    /the lease duration \(15s\) must be greater than the renew deadline \(15s\)/,
  );
  assert.match(
    leaderElectionConfigProblem({ ...ok, retryPeriodMs: 9_000 })!,
    /the renew deadline \(10s\) must be greater than 1.2 × the retry period \(9s\)/,
  );
  assert.match(leaderElectionConfigProblem({ ...ok, leaseDurationMs: 15_500 })!, /whole number of seconds/);
});
