// Keeps the React Query cache in step with jobs.onUpdate: a changed job is written into the
// jobs list and the job's own detail, so statuses and progress move without refetching.
import type { InfiniteData, QueryClient } from '@tanstack/react-query';
import type { RouterOutputs } from '../../api/client';
import type { useTRPC } from './trpc';

type Trpc = ReturnType<typeof useTRPC>;
type JobSummary = RouterOutputs['jobs']['list']['items'][number];
type JobsPage = RouterOutputs['jobs']['list'];

export function applyJobUpdate(queryClient: QueryClient, trpc: Trpc, job: JobSummary): void {
  let known = false;
  queryClient.setQueriesData<InfiniteData<JobsPage>>({ queryKey: trpc.jobs.list.infiniteQueryKey() }, (data) => {
    if (!data) return data;
    const pages = data.pages.map((page) => ({
      ...page,
      items: page.items.map((item) => {
        if (item.id !== job.id) return item;
        known = true;
        return job;
      }),
    }));
    return { ...data, pages };
  });
  // A job this list has not seen (deployed from another tab): fetch the list again.
  if (!known) void queryClient.invalidateQueries({ queryKey: trpc.jobs.list.infiniteQueryKey() });
  queryClient.setQueryData(trpc.jobs.get.queryKey({ jobId: job.id }), (detail) => (detail ? { ...detail, ...job } : detail));
}
