// drizzle-kit reads the schema here and writes SQL migrations into db/migrations,
// which are committed and applied at server start (see db/client.ts).
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './db/schema.ts',
  out: './db/migrations',
  strict: true,
  verbose: true,
});
