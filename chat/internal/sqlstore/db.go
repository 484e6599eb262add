package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// DB runs statements of the tables beside the chat table (the outbox,
// the documents) on a store's database, or in one of its transactions.
// Statements use ? placeholders; Rebind rewrites them for PostgreSQL.
type DB interface {
	// Exec runs q and returns the number of rows it changed.
	Exec(ctx context.Context, q string, args ...any) (int64, error)
	// Query runs q and calls each with its rows, which it closes after.
	Query(ctx context.Context, q string, args []any, each func(Rows) error) error
}

// Handle is the part of *sql.DB, *sql.Conn and *sql.Tx SQLDB uses.
type Handle interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// SQLDB is DB on a database/sql handle.
type SQLDB struct{ DB Handle }

// Exec implements DB.
func (d SQLDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := d.DB.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Query implements DB.
func (d SQLDB) Query(ctx context.Context, q string, args []any, each func(Rows) error) error {
	rows, err := d.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return each(rows)
}

// Rebind rewrites q's ? placeholders as $1, $2... when dollar is set
// (PostgreSQL). The statements built here hold no literal ?: every
// value is a parameter.
func Rebind(q string, dollar bool) string {
	if !dollar {
		return q
	}
	var out strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			out.WriteString("$" + strconv.Itoa(n))
			continue
		}
		out.WriteRune(r)
	}
	return out.String()
}

// derivedTableName is table+suffix, shortened with a hash of table when
// it would exceed maxLen (the dialect's identifier length), so that two
// chat tables never share a derived table.
func derivedTableName(table, suffix string, maxLen int) string {
	if len(table)+len(suffix) <= maxLen {
		return table + suffix
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	tag := fmt.Sprintf("_%08x", h.Sum32())
	return table[:maxLen-len(suffix)-len(tag)] + tag + suffix
}

// inList is the parenthesized list of n placeholders, "(?,?,?)", for an
// IN of n values; n must be at least 1.
func inList(n int) string {
	return "(?" + strings.Repeat(",?", n-1) + ")"
}
