package dmcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// DM is the device-mapper verbs the cache needs: the door to the kernel,
// faked in logic tests.
type DM interface {
	// Create makes device name with table; it fails when name exists.
	Create(ctx context.Context, name, table string) error
	// Reload swaps name's table: load, suspend (which waits for in-flight
	// I/O) and resume.
	Reload(ctx context.Context, name, table string) error
	// Remove removes name; a missing name is not an error.
	Remove(ctx context.Context, name string) error
	// Status is name's status line; ErrNotFound when it does not exist.
	Status(ctx context.Context, name string) (string, error)
	// Message sends a target message (sector 0).
	Message(ctx context.Context, name, msg string) error
	// Suspend holds new I/O to name (and flushes what its target flushes
	// on suspend); Resume lets it go on.
	Suspend(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	// OpenCount is how many times name is open (a domain's qemu has its
	// disk open); ErrNotFound when it does not exist.
	OpenCount(ctx context.Context, name string) (int, error)
}

// ErrNotFound: no device of that name.
var ErrNotFound = errors.New("no such device-mapper device")

// DMSetup runs dmsetup. Path is its path ("dmsetup" in PATH when empty).
type DMSetup struct{ Path string }

func (d DMSetup) run(ctx context.Context, args ...string) (string, error) {
	p := d.Path
	if p == "" {
		p = "dmsetup"
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "No such device") || strings.Contains(msg, "does not exist") {
			return "", fmt.Errorf("dmsetup %s: %w: %s", strings.Join(args, " "), ErrNotFound, msg)
		}
		return "", fmt.Errorf("dmsetup %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

func (d DMSetup) Create(ctx context.Context, name, table string) error {
	_, err := d.run(ctx, "create", name, "--table", table)
	return err
}

func (d DMSetup) Reload(ctx context.Context, name, table string) error {
	if _, err := d.run(ctx, "reload", name, "--table", table); err != nil {
		return err
	}
	if _, err := d.run(ctx, "suspend", name); err != nil {
		return err
	}
	_, err := d.run(ctx, "resume", name)
	return err
}

func (d DMSetup) Remove(ctx context.Context, name string) error {
	_, err := d.run(ctx, "remove", name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (d DMSetup) Status(ctx context.Context, name string) (string, error) {
	out, err := d.run(ctx, "status", name)
	return strings.TrimSpace(out), err
}

func (d DMSetup) Message(ctx context.Context, name, msg string) error {
	_, err := d.run(ctx, append([]string{"message", name, "0"}, strings.Fields(msg)...)...)
	return err
}

func (d DMSetup) Suspend(ctx context.Context, name string) error {
	_, err := d.run(ctx, "suspend", name)
	return err
}

func (d DMSetup) Resume(ctx context.Context, name string) error {
	_, err := d.run(ctx, "resume", name)
	return err
}

func (d DMSetup) OpenCount(ctx context.Context, name string) (int, error) {
	out, err := d.run(ctx, "info", "--columns", "--noheadings", "--options", "open", name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("dmsetup info %s: open count %q: %w", name, strings.TrimSpace(out), err)
	}
	return n, nil
}

// DevPath is the block device of a device-mapper name.
func DevPath(name string) string { return "/dev/mapper/" + name }
