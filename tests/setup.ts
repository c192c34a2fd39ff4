// Runs before each test file, inside workerd: applies the D1 migrations to
// the test database (storage is isolated per test file).
import { applyD1Migrations, env } from "cloudflare:test";

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
