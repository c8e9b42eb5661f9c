// Package slog is a minimal stand-in for Go 1.21's log/slog (Go 1.19 here):
// enough of the API for the reference worker, logging to stderr at warn and above.
package slog

import (
	"context"
	"fmt"
	"os"
)

type Logger struct{ attrs []any }

func Default() *Logger { return &Logger{} }
func (l *Logger) With(args ...any) *Logger {
	return &Logger{attrs: append(append([]any{}, l.attrs...), args...)}
}
func (l *Logger) Info(msg string, args ...any)                              {}
func (l *Logger) InfoContext(ctx context.Context, msg string, args ...any)  {}
func (l *Logger) DebugContext(ctx context.Context, msg string, args ...any) {}
func (l *Logger) WarnContext(ctx context.Context, msg string, args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"WARN", msg}, args...)...)
}
func (l *Logger) ErrorContext(ctx context.Context, msg string, args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"ERROR", msg}, args...)...)
}
