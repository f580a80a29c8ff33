// node-postgres (pg) against a running `omendb serve`, with its default settings. Every
// result is asserted; exits non-zero on the first mismatch.
// Usage: OMENDB_PORT=5433 OMENDB_PASSWORD=... NODE_PATH=DIR/node_modules node node_pg.js
'use strict';
const assert = require('assert');
const { Client } = require('pg');

async function main() {
  const client = new Client({
    host: '127.0.0.1',
    port: Number(process.env.OMENDB_PORT),
    user: process.env.OMENDB_USER || 'omendb',
    password: process.env.OMENDB_PASSWORD,
    database: 'omendb',
  });
  await client.connect();
  const table = 'node_pg';
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.query(
    `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, name TEXT, qty INT, price DOUBLE, ok BOOLEAN)`);
  let result = await client.query(
    `INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5)`, [1, "o'brien; DROP TABLE x", 10, 1.5, true]);
  assert.strictEqual(result.rowCount, 1);
  // A named prepared statement reused 100 times.
  for (let i = 2; i < 102; i++) {
    result = await client.query({
      name: 'insert-row',
      text: `INSERT INTO ${table} (id, name, qty) VALUES ($1, $2, $3)`,
      values: [i, `n${i}`, i],
    });
    assert.strictEqual(result.rowCount, 1);
  }
  await client.query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5)`, [500, null, null, null, null]);
  await assert.rejects(client.query('SELECT * FROM no_such_table'), (e) => e.code === '42P01');
  result = await client.query(`SELECT count(*) AS n FROM ${table}`);
  assert.strictEqual(result.rows[0].n, '102'); // int8 arrives as a string
  result = await client.query(`SELECT id, name, qty, price, ok FROM ${table} WHERE id = $1`, [1]);
  assert.deepStrictEqual(result.rows[0],
    { id: '1', name: "o'brien; DROP TABLE x", qty: 10, price: 1.5, ok: true });
  result = await client.query(`SELECT name, qty, price, ok FROM ${table} WHERE id = $1`, [500]);
  assert.deepStrictEqual(result.rows[0], { name: null, qty: null, price: null, ok: null });
  result = await client.query(`SELECT sum(qty) AS s FROM ${table} WHERE id BETWEEN $1 AND $2`, [2, 101]);
  assert.strictEqual(result.rows[0].s, String((2 + 101) * 100 / 2));
  await client.query('BEGIN');
  await client.query(`UPDATE ${table} SET name = $1 WHERE id = $2`, ['grace', 2]);
  await client.query('COMMIT');
  result = await client.query(`SELECT name FROM ${table} WHERE id = 2`);
  assert.strictEqual(result.rows[0].name, 'grace');
  // A block that fails applies nothing; its reads see its own writes.
  await client.query('BEGIN');
  await client.query(`INSERT INTO ${table} (id) VALUES ($1)`, [600]);
  result = await client.query(`SELECT count(*) AS n FROM ${table} WHERE id = $1`, [600]);
  assert.strictEqual(result.rows[0].n, '1');
  await assert.rejects(client.query('SELECT 1 / 0'), (e) => e.code === '22012');
  await assert.rejects(client.query('SELECT 1'), (e) => e.code === '25P02');
  await client.query('COMMIT');
  result = await client.query(`SELECT count(*) AS n FROM ${table} WHERE id = $1`, [600]);
  assert.strictEqual(result.rows[0].n, '0');
  await client.end();
  console.log('node-postgres: ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
