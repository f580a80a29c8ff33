// pgjdbc against a running `omendb serve`, with its default settings (it sends SETs at
// startup and switches to a server-side prepared statement from the 5th execution). Every
// result is asserted; exits non-zero on the first mismatch.
// Usage: OMENDB_PORT=5433 OMENDB_PASSWORD=... java -cp postgresql.jar Pgjdbc.java
import java.sql.*;

public class Pgjdbc {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("OMENDB_PORT") + "/omendb";
        String user = System.getenv().getOrDefault("OMENDB_USER", "omendb");
        try (Connection conn = DriverManager.getConnection(url, user, System.getenv("OMENDB_PASSWORD"))) {
            String table = "java_pgjdbc";
            try (Statement s = conn.createStatement()) {
                s.execute("DROP TABLE IF EXISTS " + table);
                s.execute("CREATE TABLE " + table
                        + " (id BIGINT PRIMARY KEY, name TEXT, qty INT, price DOUBLE, ok BOOLEAN, day DATE)");
            }
            try (PreparedStatement insert = conn.prepareStatement(
                    "INSERT INTO " + table + " (id, name, qty, price, ok, day) VALUES (?, ?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 100; i++) {
                    insert.setLong(1, i);
                    insert.setString(2, i == 1 ? "o'brien; DROP TABLE x" : "n" + i);
                    insert.setInt(3, i);
                    insert.setDouble(4, i / 4.0);
                    insert.setBoolean(5, i % 2 == 1);
                    insert.setDate(6, Date.valueOf("2024-02-29"));
                    check(insert.executeUpdate() == 1, "INSERT " + i + " reports its row");
                }
                insert.setLong(1, 500);
                insert.setNull(2, Types.VARCHAR);
                insert.setNull(3, Types.INTEGER);
                insert.setNull(4, Types.DOUBLE);
                insert.setNull(5, Types.BOOLEAN);
                insert.setNull(6, Types.DATE);
                check(insert.executeUpdate() == 1, "INSERT of NULLs");
            }
            try (Statement s = conn.createStatement()) {
                try {
                    s.executeQuery("SELECT * FROM no_such_table");
                    throw new AssertionError("a query of a missing table succeeded");
                } catch (SQLException e) {
                    check("42P01".equals(e.getSQLState()), "42P01, got " + e.getSQLState());
                }
                try (ResultSet rs = s.executeQuery("SELECT count(*) FROM " + table)) {
                    check(rs.next() && rs.getLong(1) == 101, "count");
                }
            }
            try (PreparedStatement query = conn.prepareStatement(
                    "SELECT id, name, qty, price, ok, day FROM " + table + " WHERE id = ?")) {
                for (int round = 0; round < 10; round++) {
                    query.setLong(1, 1);
                    try (ResultSet rs = query.executeQuery()) {
                        check(rs.next(), "row 1");
                        check(rs.getLong(1) == 1, "id");
                        check(rs.getString(2).equals("o'brien; DROP TABLE x"), "name");
                        check(rs.getInt(3) == 1, "qty");
                        check(rs.getDouble(4) == 0.25, "price");
                        check(rs.getBoolean(5), "ok");
                        check(rs.getDate(6).toString().equals("2024-02-29"), "day " + rs.getDate(6));
                        check(!rs.next(), "one row");
                    }
                }
                query.setLong(1, 500);
                try (ResultSet rs = query.executeQuery()) {
                    check(rs.next(), "row 500");
                    rs.getString(2);
                    check(rs.wasNull(), "NULL name");
                    rs.getInt(3);
                    check(rs.wasNull(), "NULL qty");
                }
            }
            conn.setAutoCommit(false);
            try (PreparedStatement update = conn.prepareStatement(
                    "UPDATE " + table + " SET name = ? WHERE id = ?")) {
                update.setString(1, "grace");
                update.setLong(2, 2);
                check(update.executeUpdate() == 1, "UPDATE in a transaction");
            }
            conn.commit();
            // A transaction that fails applies nothing; one rolled back neither.
            try (Statement s = conn.createStatement()) {
                s.executeUpdate("INSERT INTO " + table + " (id) VALUES (600)");
                try {
                    s.executeQuery("SELECT 1 / 0");
                    throw new AssertionError("1 / 0 succeeded");
                } catch (SQLException e) {
                    check("22012".equals(e.getSQLState()), "22012, got " + e.getSQLState());
                }
                conn.rollback();
                s.executeUpdate("INSERT INTO " + table + " (id) VALUES (601)");
                conn.rollback();
            }
            conn.setAutoCommit(true);
            // executeBatch with a failing row: the batch is one pipeline, none of it applied.
            try (PreparedStatement insert = conn.prepareStatement(
                    "INSERT INTO " + table + " (id) VALUES (?)")) {
                for (long id : new long[] {700, 701, 700}) {
                    insert.setLong(1, id);
                    insert.addBatch();
                }
                try {
                    insert.executeBatch();
                    throw new AssertionError("a batch with a duplicate key succeeded");
                } catch (BatchUpdateException e) {
                    check("23505".equals(e.getSQLState()), "23505, got " + e.getSQLState());
                }
            }
            try (Statement s = conn.createStatement();
                 ResultSet rs = s.executeQuery("SELECT count(*) FROM " + table + " WHERE id >= 600")) {
                check(rs.next() && rs.getLong(1) == 0, "nothing of the failed transactions");
            }
            try (Statement s = conn.createStatement();
                 ResultSet rs = s.executeQuery("SELECT name FROM " + table + " WHERE id = 2")) {
                check(rs.next() && rs.getString(1).equals("grace"), "committed update");
            }
        }
        System.out.println("pgjdbc: ok");
    }
}
