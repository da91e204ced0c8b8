// The job as the job page and its tabs read it (jobs.get's answer). Its own module so the tabs
// can name it without importing the page that imports them.
import type { RouterOutputs } from '../../../api/client';

export type JobDetail = RouterOutputs['jobs']['get'];
