package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

// pgxQuerier is what pgxDB needs of a *pgxpool.Pool or *pgxpool.Conn.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// pgxDB is sqlstore.DB on a pool or on one connection (in a transaction).
type pgxDB struct{ q pgxQuerier }

func (d pgxDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := d.q.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (d pgxDB) Query(ctx context.Context, q string, args []any, each func(sqlstore.Rows) error) error {
	rows, err := d.q.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return each(rows)
}
